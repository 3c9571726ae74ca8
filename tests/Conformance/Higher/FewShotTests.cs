using System.Globalization;
using Higher.Data;
using Higher.Samples.FewShot;

namespace Higher.Conformance.Higher;

/// <summary>
/// The fewshot sample's pipeline (samples/Higher.Samples/FewShot, its own classes) at tiny sizes on
/// generated 28 × 28 images: 10 classes, each a bright 8 × 8 square at its own place plus noise, so a
/// few SGD steps separate them. Meta-training, pre-training and the evaluation of the three models
/// run end to end in a few seconds.
/// </summary>
public sealed class FewShotTests(ITestOutputHelper output)
{
    private static readonly FewShotConfig Config = new()
    {
        Ways = 3,
        Shots = 2,
        TrainQueries = 2,
        TestQueries = 4,
        InnerSteps = 2,
        EvalSteps = 4,
        MetaBatch = 2,
        Iterations = 3,
        Channels = 8,
        PretrainIterations = 5,
        PretrainBatch = 16,
        Tasks = 6,
    };

    private static readonly int[] TrainClasses = [0, 1, 2, 3, 4];
    private static readonly int[] TestClasses = [5, 6, 7, 8, 9];

    /// <summary>20 images per class: class c is 0.9 on the 8 × 8 square at (3 + 5·(c mod 4), 2 + 6·(c div 4)), noise in [0, 0.3) elsewhere.</summary>
    private static (Tensor Images, Tensor Labels) Squares(int perClass, ulong seed)
    {
        var g = new Generator(seed);
        int n = 10 * perClass;
        var noise = Tensor.Rand([n, 1, 28, 28], DType.Float32, g).ToFloatArray();
        var labels = new long[n];
        for (int i = 0; i < n; i++)
        {
            int c = i % 10;
            labels[i] = c;
            int top = 2 + (6 * (c / 4)), left = 3 + (5 * (c % 4));
            for (int y = 0; y < 28; y++)
            {
                for (int x = 0; x < 28; x++)
                {
                    int k = (i * 784) + (y * 28) + x;
                    bool inside = y >= top && y < top + 8 && x >= left && x < left + 8;
                    noise[k] = inside ? 0.9f : 0.3f * noise[k];
                }
            }
        }
        return (Tensor.FromArray(noise, [n, 1, 28, 28]), Tensor.FromArray(labels));
    }

    private static (FewShotResults Results, double[] Weights, double[] MetaLoss) RunPipeline()
    {
        var (trainImages, trainLabels) = Squares(20, 11);
        var (testImages, testLabels) = Squares(20, 12);
        var train = new EpisodeSampler(trainImages, trainLabels, TrainClasses, Config.Ways, Config.Shots, Config.TrainQueries);
        var test = new EpisodeSampler(testImages, testLabels, TestClasses, Config.Ways, Config.Shots, Config.TestQueries);
        var losses = new List<double>();
        var maml = FewShotMaml.MetaTrain(Config, train, 28, (_, loss, _) => losses.Add(loss));
        var pretrained = FewShotMaml.Pretrain(Config, trainImages, trainLabels, TrainClasses);
        var before = maml.Parameters().SelectMany(p => p.ToDoubleArray()).Concat(pretrained.Parameters().SelectMany(p => p.ToDoubleArray())).ToArray();
        var results = FewShotMaml.Evaluate(Config, maml, pretrained, test);
        var after = maml.Parameters().SelectMany(p => p.ToDoubleArray()).Concat(pretrained.Parameters().SelectMany(p => p.ToDoubleArray())).ToArray();
        Assert.Equal(before, after); // adaptation works on functional copies: the trained models are unchanged
        return (results, after, [.. losses]);
    }

    [Fact]
    public void Pipeline_RunsEndToEnd_Deterministically_AndAdaptationLearnsTheSupportSets()
    {
        var (first, weights, metaLoss) = RunPipeline();
        Assert.Equal(Config.Iterations, metaLoss.Length);
        Assert.All(metaLoss, l => Assert.True(double.IsFinite(l) && l > 0, $"meta-loss {l}"));
        foreach (var (name, a) in new[] { ("MAML", first.Maml), ("pre-trained", first.Pretrained), ("scratch", first.Scratch) })
        {
            Assert.Equal(Config.Tasks, a.PerTask.Length);
            Assert.All(a.PerTask, row => Assert.Equal(Config.EvalSteps + 1, row.Length));
            // Each task's accuracy is a count of the 12 queries right.
            Assert.All(a.PerTask.SelectMany(r => r), v => Assert.Equal(Math.Round(v * 12), v * 12, 9));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name}: accuracy after 0..{Config.EvalSteps} steps {string.Join(" ", a.Means.Select(m => m.ToString("F3", CultureInfo.InvariantCulture)))}"));
            // The squares are easy: a few steps on 2 shots per class take every model well above chance (1/3).
            Assert.True(a.At(Config.EvalSteps).Mean > 0.7, $"{name}: {a.At(Config.EvalSteps)} after {Config.EvalSteps} steps");
        }

        // The same seeds give the same models and the same accuracies, to the bit.
        var (second, weights2, metaLoss2) = RunPipeline();
        Assert.Equal(weights, weights2);
        Assert.Equal(metaLoss, metaLoss2);
        Assert.Equal(first.Maml.PerTask, second.Maml.PerTask);
        Assert.Equal(first.Scratch.PerTask, second.Scratch.PerTask);
        Assert.Equal(first.Pretrained.PerTask, second.Pretrained.PerTask);
    }

    [Fact]
    public void Interval_IsTheMeanAnd196StandardErrors()
    {
        // values 0, 1, 1, 0, 1: mean 0.6, sample variance 0.3, standard error sqrt(0.3 / 5).
        var i = Interval.Of([0, 1, 1, 0, 1]);
        Assert.Equal(0.6, i.Mean, 12);
        Assert.Equal(1.96 * Math.Sqrt(0.3 / 5), i.HalfWidth, 12);
        Assert.Equal(0, Interval.Of([0.25]).HalfWidth);
        Assert.Equal("60.00 ± 48.01 %", i.ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => Interval.Of([]));
    }

    [Fact]
    public void Network_IsHighersOmniglotNet()
    {
        var net = FewShotMaml.Network(28, 64, 5, new Generator(0));
        var text = net.ToString();
        Assert.Contains("Conv2d(1, 64, kernel_size=(3, 3)", text);
        Assert.Contains("BatchNorm2d(64, eps=1e-05, momentum=1.0", text);
        Assert.Contains("Linear(in_features=64, out_features=5", text);
        Assert.Equal(3, net.Modules().Count(m => m is global::Higher.Nn.MaxPool2d));
        Assert.Equal([7, 5], net.Forward(Tensor.Zeros([7, 1, 28, 28])).Shape.ToArray());
        // 3 convs (9·1·64 + 64, then 2 × (9·64·64 + 64)) + 3 batch norms (2·64 each) + the head (64·5 + 5).
        Assert.Equal((9 * 64) + 64 + (2 * ((9 * 64 * 64) + 64)) + (3 * 128) + (64 * 5) + 5, net.Parameters().Sum(p => p.Numel));
        Assert.Throws<ArgumentOutOfRangeException>(() => FewShotMaml.Network(20, 8, 5, new Generator(0)));
    }
}
