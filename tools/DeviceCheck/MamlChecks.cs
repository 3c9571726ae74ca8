using System.Diagnostics;
using System.Globalization;
using Higher.Cuda;
using Higher.Samples.MamlSinusoid;

namespace Higher.DeviceCheck;

/// <summary>The MAML sinusoid sample (samples/Higher.Samples/MamlSinusoid, the maml-sine command) timed on both devices, and the allocator's counters over a long run.</summary>
internal static class MamlChecks
{
    /// <summary>Seconds per meta-iteration of second-order MAML on each device (after a two-iteration warm-up), and how closely the loss curves agree.</summary>
    public static void Time(Device candidate, int iterations, Report report)
    {
        var curves = new Dictionary<Device, List<double>>();
        foreach (var device in new[] { Device.Cpu, candidate })
        {
            var config = new MamlConfig { Iterations = iterations, MetaBatch = 25, Device = device, DType = DType.Float32 };
            Maml.MetaTrain(config with { Iterations = 2 });
            var losses = new List<double>();
            var clock = Stopwatch.StartNew();
            Maml.MetaTrain(config, (_, loss) => losses.Add(loss));
            double seconds = clock.Elapsed.TotalSeconds;
            curves[device] = losses;
            report.Add(new TimingResult(Label(device), "float32", iterations, config.MetaBatch, seconds / iterations, losses[^1]));
        }
        var cpu = curves[Device.Cpu];
        var other = curves[candidate];
        double worst = cpu.Zip(other, (a, b) => Math.Abs(a - b) / Math.Max(Math.Abs(a), 1e-12)).Max();
        report.Note(string.Create(CultureInfo.InvariantCulture,
            $"MAML meta-loss curves, cpu vs {Label(candidate)} (float32, same seed): largest relative difference over {cpu.Count} meta-iterations {worst:0.00E+00} (informational: float32 rounding differences grow through Adam)."));
    }

    /// <summary>"cpu", "cpu:1" (the self-test's second CPU device), "cuda:0".</summary>
    private static string Label(Device device) => device.Type == DeviceType.Cpu && device.Index != 0 ? $"cpu:{device.Index}" : device.ToString();

    /// <summary>
    /// Runs <paramref name="iterations"/> meta-iterations on the CUDA device and samples the caching
    /// allocator at iterations 1, 10, 100, 1000 (those ≤ <paramref name="iterations"/>, and the last).
    /// Flat means the device memory the allocator holds (in use + cached) at the end is within 1.5×
    /// (+ 8 MiB) of what it held at the second-to-last sample.
    /// </summary>
    public static void Memory(CudaBackend cuda, int iterations, int metaBatch, Report report)
    {
        var at = new SortedSet<int> { 1, 10, 100, 1000, iterations };
        at.RemoveWhere(i => i > iterations);
        var samples = new List<MemorySample>();
        var config = new MamlConfig { Iterations = iterations, MetaBatch = metaBatch, Device = cuda.Device, DType = DType.Float32 };
        Maml.MetaTrain(config, (it, _) =>
        {
            if (at.Contains(it + 1))
            {
                var s = cuda.Allocator.Statistics;
                var (free, _) = cuda.GetMemoryInfo();
                var sample = new MemorySample(it + 1, s.BytesInUse, s.BytesCached, s.PeakBytesInUse, s.DeviceAllocations, s.HitRate,
                    s.InducedCollections, s.FinalizedReturns, free);
                samples.Add(sample);
                report.Add(sample);
            }
        });
        long Held(MemorySample m) => m.BytesInUse + m.BytesCached;
        var last = samples[^1];
        var before = samples.Count > 1 ? samples[^2] : samples[0];
        bool flat = Held(last) <= 1.5 * Held(before) + (8L << 20);
        report.MemoryFlat = flat;
        report.MemoryVerdict = string.Create(CultureInfo.InvariantCulture,
            $"{(flat ? "Flat" : "GREW")}: the allocator held {Held(last) / 1048576.0:F1} MiB after {last.Iteration} meta-iterations (meta-batch {metaBatch}) against {Held(before) / 1048576.0:F1} MiB after {before.Iteration}; collection threshold {cuda.Allocator.CollectionThreshold / 1048576.0:F0} MiB.");
    }
}
