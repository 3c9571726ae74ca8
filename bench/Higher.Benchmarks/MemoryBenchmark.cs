using System.Globalization;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Benchmarks;

/// <summary>
/// Retained memory of a long inner loop (not a timing): a 1-40-40-1 tanh MLP (1,761 weights) unrolled
/// 200 SGD steps on 10 points, once per option that could bound memory. After the steps, a full
/// blocking GC, and the managed heap (where the Reference backend keeps every buffer) is read: the
/// retained bytes per step are the slope between step 100 and step 200, so constant costs drop out.
/// <code>dotnet run -c Release --project bench/Higher.Benchmarks -- memory</code>
/// </summary>
public static class MemoryBenchmark
{
    private const int Steps = 200;
    private const int Checkpoint = 100;

    private sealed record Variant(string Name, bool Track, int? MaxHistory, int? TruncateEvery);

    private static readonly Variant[] Variants =
    [
        new("tracked, no option", true, null, null),
        new("tracked, MaxHistory = 1", true, 1, null),
        new("tracked, truncateEvery = 10", true, null, 10),
        new("tracked, truncateEvery = 10 and MaxHistory = 1", true, 1, 10),
        new("tracking off (trackHigherGrads: false)", false, null, null),
    ];

    /// <summary>Runs every variant and prints a Markdown table.</summary>
    public static void Run()
    {
        Console.WriteLine($"| Option | retained after {Checkpoint} steps | after {Steps} steps | per step ({Checkpoint}..{Steps}) |");
        Console.WriteLine("|---|---:|---:|---:|");
        foreach (var v in Variants)
        {
            var (atCheckpoint, atEnd, baseline) = Measure(v);
            double perStep = (atEnd - atCheckpoint) / (double)(Steps - Checkpoint);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {v.Name} | {(atCheckpoint - baseline) / 1024.0:N0} KiB | {(atEnd - baseline) / 1024.0:N0} KiB | {perStep / 1024.0:N1} KiB |"));
        }
    }

    private static (long AtCheckpoint, long AtEnd, long Baseline) Measure(Variant v)
    {
        var g = new Generator(3);
        var model = new Sequential(new Linear(1, 40, generator: g), new Tanh(), new Linear(40, 40, generator: g), new Tanh(), new Linear(40, 1, generator: g));
        var x = Tensor.Uniform([10, 1], -5, 5, generator: g);
        var y = x.Sin();
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 1e-3 });
        long baseline = Retained();
        long atCheckpoint = 0;
        using var ctx = InnerLoop.Create(model, opt, copyInitialWeights: false, trackHigherGrads: v.Track, truncateEvery: v.TruncateEvery);
        var (fmodel, diffopt) = ctx;
        fmodel.MaxHistory = v.MaxHistory;
        for (int step = 1; step <= Steps; step++)
        {
            diffopt.Step(F.MseLoss(fmodel.Forward(x), y));
            if (step == Checkpoint)
            {
                atCheckpoint = Retained();
            }
        }
        long atEnd = Retained();
        // The context stays reachable until here, so its history and graph are what was measured.
        GC.KeepAlive(fmodel.FastParams);
        return (atCheckpoint, atEnd, baseline);
    }

    private static long Retained()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(forceFullCollection: true);
    }
}
