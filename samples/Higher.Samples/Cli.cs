using System.CommandLine;
using System.CommandLine.Parsing;
using Higher.Cuda;

namespace Higher.Samples;

/// <summary>The options every command shares, and the checks that run before any work starts.</summary>
internal static class Cli
{
    /// <summary>--device cpu|cuda (default cpu).</summary>
    public static Option<string> DeviceOption() =>
        new Option<string>("--device") { Description = "Where the tensors live: cpu or cuda (cuda:0; needs a GPU, the CUDA runtime and native/build.sh)", DefaultValueFactory = _ => "cpu" }
            .AcceptOnlyFromAmong("cpu", "cuda");

    /// <summary>--out DIR: where the plots go.</summary>
    public static Option<string> OutOption(string command) =>
        new("--out") { Description = "Folder for the plots (PNG) and results", DefaultValueFactory = _ => Path.Combine("results", command) };

    /// <summary>An int option that must be at least <paramref name="min"/>.</summary>
    public static Option<int> Int(string name, string description, int defaultValue, int min = 1)
    {
        var o = new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        o.Validators.Add(r =>
        {
            if (TryValue(r, out int v) && v < min)
            {
                r.AddError($"{name} must be at least {min}; got {v}.");
            }
        });
        return o;
    }

    /// <summary>A positive finite double option.</summary>
    public static Option<double> Positive(string name, string description, double defaultValue)
    {
        var o = new Option<double>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        o.Validators.Add(r =>
        {
            if (TryValue(r, out double v) && (!(v > 0) || !double.IsFinite(v)))
            {
                r.AddError($"{name} must be a positive number; got {v}.");
            }
        });
        return o;
    }

    /// <summary>The option's value, or false when it did not parse (the parser reports that error itself).</summary>
    public static bool TryValue<T>(OptionResult r, out T value)
    {
        try
        {
            value = r.GetValueOrDefault<T>();
            return true;
        }
        catch (InvalidOperationException)
        {
            value = default!;
            return false;
        }
    }

    /// <summary>
    /// The device named by --device: the CPU, or cuda:0 once its backend is registered. Null, with
    /// the one-line reason written to stderr, when CUDA cannot be used here.
    /// </summary>
    public static Device? ResolveDevice(string name)
    {
        if (name == "cpu")
        {
            return Device.Cpu;
        }
        if (!CudaBackend.TryGetShared(out var backend, out string reason))
        {
            Console.Error.WriteLine($"--device cuda: CUDA is not available here: {reason}");
            return null;
        }
        Backends.Register(backend!);
        return Device.Cuda(0);
    }

    /// <summary>Creates the output folder and returns its full path.</summary>
    public static string PrepareOut(string dir)
    {
        var full = Path.GetFullPath(dir);
        Directory.CreateDirectory(full);
        return full;
    }
}
