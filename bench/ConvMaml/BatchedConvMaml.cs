// --batched: the conv MAML workload of Program.cs (higher's Omniglot net, 5-way 5-shot, 15 queries per
// class, 5 inner SGD steps lr 0.1, second order, float32) at meta-batches 4 and 16, each meta-batch
// run four ways, each in its own process (so each peak RSS is its own): Higher task by task
// (InnerLoop.Create per task), Higher task-batched (InnerLoop.CreateBatched: fast weights [T, ...],
// inputs [T, 25, 1, 28, 28], the tasks folded into the convolutions' groups), PyTorch task by task
// (autograd.grad(create_graph=True)) and PyTorch functorch vmap + grad (conv_maml_batched_torch.py).
//
//   dotnet run -c Release --project bench/ConvMaml -- --batched [--meta-batches 4,16] [--iterations 1] [--warmup 0] [--threads 2] [--python /usr/bin/python3]
//
// A task-batched unroll keeps the graphs of all T tasks alive at once (task by task frees each task's
// graph after its backward), so its peak memory grows with the meta-batch: the table says how much.

using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Higher;
using Higher.Bench;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using Higher.Reference;

/// <summary>The --batched mode of the conv MAML benchmark.</summary>
internal static class BatchedConvMaml
{
    private sealed record Options(int[] MetaBatches, int Iterations, int Warmup, int Threads, string Python, string? Child, int ChildMetaBatch);

    public static int Run(string[] args)
    {
        var o = Parse(args);
        if (o.Child is { } child)
        {
            Backends.Register(new ReferenceBackend(o.Threads));
            var r = RunHigher(child == "batched", o.ChildMetaBatch, o.Iterations, o.Warmup);
            Console.WriteLine(JsonSerializer.Serialize(r));
            return 0;
        }
        Console.WriteLine($"Conv MAML, task-batched beside task by task (higher's Omniglot net, 5-way {Workload.Shots}-shot, {Workload.Queries} queries/class, {Workload.InnerSteps} inner SGD steps lr {Workload.InnerLr}, second order, float32, {o.Threads} threads)");
        Console.WriteLine($"{o.Warmup} warm-up + {o.Iterations} timed meta-iterations per row; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {Environment.ProcessorCount} cores; .NET {Environment.Version}; load {BenchProcess.LoadAverage()}");
        var rows = new List<(int MetaBatch, RunResult? Result, string Name, string? Why)>();
        // The batched forms keep every task's graph at once, so their peak grows with the meta-batch: a
        // row whose peak, extrapolated from the previous meta-batch, would not fit in the memory
        // available now is skipped (and says so) rather than pushing a shared machine into swap.
        var perTaskPeak = new Dictionary<string, double>();
        string script = Path.Combine(AppContext.BaseDirectory, "conv_maml_batched_torch.py");
        foreach (int mb in o.MetaBatches.Order())
        {
            string common = string.Create(CultureInfo.InvariantCulture, $"--meta-batch {mb} --iterations {o.Iterations} --warmup {o.Warmup} --threads {o.Threads}");
            var plan = new (string Key, string Name, Func<RunResult?> Start)[]
            {
                ("sequential", "Higher, task by task", () => Child($"--batched --child sequential {common}", "Higher task by task")),
                ("batched", "Higher, task-batched", () => Child($"--batched --child batched {common}", "Higher task-batched")),
                ("unroll", "PyTorch, task by task (autograd.grad)", () => File.Exists(o.Python) ? Start(o.Python, $"{script} --mode unroll {common}", "PyTorch unroll") : null),
                ("vmap", "PyTorch, functorch vmap + grad", () => File.Exists(o.Python) ? Start(o.Python, $"{script} --mode vmap {common}", "PyTorch vmap") : null),
            };
            foreach (var (key, name, start) in plan)
            {
                double available = AvailableMiB();
                if (key is "batched" or "vmap" && perTaskPeak.TryGetValue(key, out var per) && per * mb > 0.8 * available)
                {
                    rows.Add((mb, null, name, string.Create(CultureInfo.InvariantCulture, $"skipped: about {per * mb:F0} MiB needed, {available:F0} MiB available")));
                    continue;
                }
                var r = start();
                if (r is not null)
                {
                    perTaskPeak[key] = r.PeakRssMiB / mb;
                }
                rows.Add((mb, r, name, null));
            }
        }
        Console.WriteLine();
        Console.WriteLine("| meta-batch | implementation | ms per task (wall) | CPU ms per task | peak RSS |");
        Console.WriteLine("|---:|---|---:|---:|---:|");
        foreach (var (mb, r, name, why) in rows)
        {
            Console.WriteLine(r is null
                ? $"| {mb} | {name} | {why ?? "absent"} | | |"
                : string.Create(CultureInfo.InvariantCulture, $"| {mb} | {r.Name ?? name} | {r.MsPerTask:F0} | {r.CpuMsPerTask:F0} | {r.PeakRssMiB:F0} MiB |"));
        }
        Console.WriteLine($"load after: {BenchProcess.LoadAverage()}");
        return 0;
    }

    private static Options Parse(string[] args)
    {
        var o = new Options([4, 16], 1, 0, 2, "/usr/bin/python3", null, 0);
        for (int i = 0; i < args.Length; i++)
        {
            o = args[i] switch
            {
                "--batched" => o,
                "--meta-batches" => o with { MetaBatches = args[++i].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() },
                "--meta-batch" => o with { ChildMetaBatch = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--iterations" => o with { Iterations = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--warmup" => o with { Warmup = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--threads" => o with { Threads = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--python" => o with { Python = args[++i] },
                "--child" => o with { Child = args[++i] },
                _ => throw new ArgumentException($"Unknown option {args[i]} for --batched; use --meta-batches 4,16, --iterations N, --warmup N, --threads N, --python PATH."),
            };
        }
        return o;
    }

    /// <summary>MemAvailable of /proc/meminfo, in MiB (infinite where there is none).</summary>
    private static double AvailableMiB()
    {
        if (!File.Exists("/proc/meminfo"))
        {
            return double.PositiveInfinity;
        }
        foreach (var line in File.ReadLines("/proc/meminfo"))
        {
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
            {
                return double.Parse(line["MemAvailable:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
            }
        }
        return double.PositiveInfinity;
    }

    private static RunResult? Child(string arguments, string what) => Start(Environment.ProcessPath!, arguments, what);

    private static RunResult? Start(string file, string arguments, string what) =>
        BenchProcess.Run(file, arguments, $"{what} run") is { } output ? JsonSerializer.Deserialize<RunResult>(BenchProcess.LastLine(output)) : null;

    private static RunResult RunHigher(bool batched, int metaBatch, int iterations, int warmup)
    {
        var g = new Generator(1);
        var model = HigherRun.BuildNet(g);
        var meta = new Adam(model.Parameters(), new AdamOptions { Lr = Workload.MetaLr });
        var inner = new Sgd(model.Parameters(), new SgdOptions { Lr = Workload.InnerLr });
        var watch = new Stopwatch();
        var cpuStart = TimeSpan.Zero;
        for (int it = 0; it < warmup + iterations; it++)
        {
            if (it == warmup)
            {
                GC.Collect();
                watch.Start();
                cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
            }
            meta.ZeroGrad();
            if (batched)
            {
                MetaBatch(model, inner, g, metaBatch);
            }
            else
            {
                for (int t = 0; t < metaBatch; t++)
                {
                    Task(model, inner, g, metaBatch);
                }
            }
            meta.Step();
        }
        watch.Stop();
        int tasks = iterations * metaBatch;
        double cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalMilliseconds;
        return new RunResult(batched ? "Higher, task-batched (InnerLoop.CreateBatched)" : "Higher, task by task (InnerLoop.Create)",
            watch.Elapsed.TotalMilliseconds / tasks, HigherRun.PeakRssMiB(), cpuMs / tasks);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void Task(Sequential model, Sgd inner, Generator g, int metaBatch)
    {
        var xs = Tensor.Rand([Workload.Ways * Workload.Shots, 1, 28, 28], DType.Float32, g);
        var xq = Tensor.Rand([Workload.Ways * Workload.Queries, 1, 28, 28], DType.Float32, g);
        using var context = InnerLoop.Create(model, inner, copyInitialWeights: false);
        var (fmodel, diffopt) = context;
        for (int s = 0; s < Workload.InnerSteps; s++)
        {
            diffopt.Step(F.CrossEntropy(fmodel.Forward(xs), HigherRun.Labels(Workload.Shots)));
        }
        (F.CrossEntropy(fmodel.Forward(xq), HigherRun.Labels(Workload.Queries)) / metaBatch).Backward();
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void MetaBatch(Sequential model, Sgd inner, Generator g, int tasks)
    {
        var xs = Tensor.Rand([tasks, Workload.Ways * Workload.Shots, 1, 28, 28], DType.Float32, g);
        var xq = Tensor.Rand([tasks, Workload.Ways * Workload.Queries, 1, 28, 28], DType.Float32, g);
        var ys = Tensor.Stack(Enumerable.Repeat(HigherRun.Labels(Workload.Shots), tasks).ToList());
        var yq = Tensor.Stack(Enumerable.Repeat(HigherRun.Labels(Workload.Queries), tasks).ToList());
        using var context = InnerLoop.CreateBatched(model, inner, tasks, copyInitialWeights: false);
        var (fmodel, diffopt) = context;
        for (int s = 0; s < Workload.InnerSteps; s++)
        {
            diffopt.Step(TaskLosses.CrossEntropy(fmodel.Forward(xs), ys));
        }
        TaskLosses.CrossEntropy(fmodel.Forward(xq), yq).Mean().Backward();
    }
}
