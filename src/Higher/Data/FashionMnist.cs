namespace Higher.Data;

/// <summary>Fashion-MNIST: 60 000 training and 10 000 test images of 28×28 pixels in 10 classes.</summary>
/// <param name="TrainImages">[60000, 28, 28] Float32 in [0, 1].</param>
/// <param name="TrainLabels">[60000] Int64 in 0..9.</param>
/// <param name="TestImages">[10000, 28, 28] Float32 in [0, 1].</param>
/// <param name="TestLabels">[10000] Int64 in 0..9.</param>
public sealed record FashionMnist(Tensor TrainImages, Tensor TrainLabels, Tensor TestImages, Tensor TestLabels)
{
    /// <summary>Where Debian's dataset-fashion-mnist package installs the files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>The class names, by label.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>
    /// Loads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    /// t10k-labels-idx1-ubyte (each plain or with .gz) from <paramref name="directory"/>
    /// (default <see cref="DefaultDirectory"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">A file is missing; the message names every path tried.</exception>
    public static FashionMnist Load(string? directory = null)
    {
        var dir = directory ?? DefaultDirectory;
        return new FashionMnist(
            Idx.ReadImages(Find(dir, "train-images-idx3-ubyte")),
            Idx.ReadLabels(Find(dir, "train-labels-idx1-ubyte")),
            Idx.ReadImages(Find(dir, "t10k-images-idx3-ubyte")),
            Idx.ReadLabels(Find(dir, "t10k-labels-idx1-ubyte")));
    }

    private static string Find(string directory, string name)
    {
        string[] candidates = [Path.Combine(directory, name), Path.Combine(directory, name + ".gz")];
        foreach (var c in candidates)
        {
            if (File.Exists(c))
            {
                return c;
            }
        }
        throw new FileNotFoundException(
            $"Fashion-MNIST file '{name}' not found; tried {string.Join(" and ", candidates)}. On Debian: apt-get install dataset-fashion-mnist.",
            candidates[0]);
    }
}
