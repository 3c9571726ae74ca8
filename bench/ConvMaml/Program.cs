// Conv MAML benchmark: higher's Omniglot MAML (3 x [Conv2d(·, 64, 3), BatchNorm2d(64, momentum 1),
// ReLU, MaxPool2d(2)] + Flatten + Linear(64, 5)), 5-way 5-shot with 15 queries per class, 5 inner
// SGD steps (lr 0.1) with second-order meta-gradients, meta-batch 2, meta Adam (lr 1e-3), random
// 28x28 float32 inputs, 2 threads. Prints ms per task and peak RSS for Higher beside the same
// computation in PyTorch (conv_maml_torch.py, run with /usr/bin/python3 as a subprocess).
//
//   dotnet run -c Release --project bench/ConvMaml -- [--iterations 4] [--warmup 10] [--threads 2] [--python /usr/bin/python3]
//
// Ten warm-up meta-iterations by default: .NET's tiered JIT recompiles the engine's and the kernels' callers with
// profile data over the first twenty or so tasks, and a run timed after one warm-up iteration read 15-20 % slower
// than the steady state a long meta-training run sees (bench/RESULTS.md, session 9). PyTorch gets the same warm-up.
//
// The runs are separate processes, each measuring its own peak RSS (VmHWM / ru_maxrss): Higher as
// written above, Higher with each task inside Tensor.NewScope() (--scope), and PyTorch.
// --kernels times each convolution primitive, and batch norm, ReLU and max-pool with their gradients, at the net's
// shapes instead (the best and the median of blocks of five calls, each call in a scope).

using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Higher;
using Higher.Bench;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using Higher.Reference;

if (args.Contains("--batched"))
{
    // Task-batched beside task by task at meta-batches 4 and 16 (BatchedConvMaml.cs).
    return BatchedConvMaml.Run(args);
}
var options = BenchOptions.Parse(args);
if (options.Kernels)
{
    KernelTimes.Run(options.Threads);
    return 0;
}
if (options.HigherOnly)
{
    // The Higher half, in its own process so its peak RSS is its own.
    var result = HigherRun.Run(options);
    Console.WriteLine(JsonSerializer.Serialize(result));
    return 0;
}

Console.WriteLine($"Conv MAML (higher's Omniglot net, 5-way {Workload.Shots}-shot, {Workload.Queries} queries/class, {Workload.InnerSteps} inner SGD steps lr {Workload.InnerLr}, second order, meta-batch {Workload.MetaBatch}, float32, {options.Threads} threads)");
Console.WriteLine($"{options.Warmup} warm-up + {options.Iterations} timed meta-iterations each; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {Environment.ProcessorCount} cores; .NET {Environment.Version}");
var higher = RunChild(Environment.ProcessPath!, BuildChildArgs(options, "--higher-only"), "Higher");
// The same run with each task inside Tensor.NewScope(): what the task made and did not keep goes back
// to the buffer pool when the task ends, instead of waiting for the garbage collector.
var scoped = RunChild(Environment.ProcessPath!, BuildChildArgs(options, "--higher-only --scope"), "Higher (scope per task)");
var torch = RunTorch(options);
Console.WriteLine();
// CPU time (user + system, all threads) beside wall time: on a shared machine the wall time
// includes waiting for a core, the CPU time much less so.
Console.WriteLine("| implementation | ms per task (wall) | CPU ms per task | peak RSS |");
Console.WriteLine("|---|---:|---:|---:|");
Console.WriteLine(Row("Higher (Reference backend)", higher));
Console.WriteLine(Row("Higher, each task in Tensor.NewScope()", scoped));
Console.WriteLine(Row(torch?.Name ?? "PyTorch + autograd.grad(create_graph=True)", torch));
return 0;

static string Row(string name, RunResult? r) => r is null
    ? $"| {name} | absent | absent | absent |"
    : string.Create(CultureInfo.InvariantCulture, $"| {name} | {r.MsPerTask:F1} | {r.CpuMsPerTask:F1} | {r.PeakRssMiB:F0} MiB |");

static string BuildChildArgs(BenchOptions o, string mode) =>
    string.Create(CultureInfo.InvariantCulture, $"{mode} --iterations {o.Iterations} --warmup {o.Warmup} --threads {o.Threads}");

static RunResult? RunChild(string file, string arguments, string what) =>
    BenchProcess.Run(file, arguments, $"{what} run") is { } output ? JsonSerializer.Deserialize<RunResult>(BenchProcess.LastLine(output)) : null;

static RunResult? RunTorch(BenchOptions o)
{
    string script = Path.Combine(AppContext.BaseDirectory, "conv_maml_torch.py");
    if (!File.Exists(o.Python))
    {
        Console.Error.WriteLine($"PyTorch column absent: {o.Python} not found.");
        return null;
    }
    var r = RunChild(o.Python, $"{script} {BuildChildArgs(o, "--json")}", "PyTorch");
    if (r is null)
    {
        Console.Error.WriteLine("PyTorch column absent (is torch installed for that interpreter?).");
    }
    return r;
}

/// <summary>The workload both implementations run.</summary>
internal static class Workload
{
    public const int Ways = 5, Shots = 5, Queries = 15, InnerSteps = 5, MetaBatch = 2, Channels = 64;
    public const double InnerLr = 0.1, MetaLr = 1e-3;
}

/// <summary>Command-line options.</summary>
internal sealed record BenchOptions(int Iterations, int Warmup, int Threads, string Python, bool HigherOnly, bool Kernels = false, bool Scope = false)
{
    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions(4, 10, 2, "/usr/bin/python3", false);
        for (int i = 0; i < args.Length; i++)
        {
            o = args[i] switch
            {
                "--iterations" => o with { Iterations = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--warmup" => o with { Warmup = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--threads" => o with { Threads = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--python" => o with { Python = args[++i] },
                "--higher-only" => o with { HigherOnly = true },
                "--kernels" => o with { Kernels = true },
                "--scope" => o with { Scope = true },
                _ => throw new ArgumentException($"Unknown option {args[i]}; use --iterations N, --warmup N, --threads N, --python PATH."),
            };
        }
        return o;
    }
}

/// <summary>One implementation's figures.</summary>
internal sealed record RunResult(string Name, double MsPerTask, double PeakRssMiB, double CpuMsPerTask);

/// <summary>The Higher half of the benchmark.</summary>
internal static class HigherRun
{
    public static RunResult Run(BenchOptions o)
    {
        Backends.Register(new ReferenceBackend(o.Threads));
        var g = new Generator(1);
        var model = BuildNet(g);
        var meta = new Adam(model.Parameters(), new AdamOptions { Lr = Workload.MetaLr });
        var inner = new Sgd(model.Parameters(), new SgdOptions { Lr = Workload.InnerLr });
        var ySupport = Labels(Workload.Shots);
        var yQuery = Labels(Workload.Queries);
        var watch = new Stopwatch();
        var cpuStart = TimeSpan.Zero;
        (int Gen0, int Gen1, int Gen2) gcStart = default;
        var pauseStart = TimeSpan.Zero;
        for (int it = 0; it < o.Warmup + o.Iterations; it++)
        {
            if (it == o.Warmup)
            {
                watch.Start();
                cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
                gcStart = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2));
                pauseStart = GC.GetTotalPauseDuration();
            }
            meta.ZeroGrad();
            for (int t = 0; t < Workload.MetaBatch; t++)
            {
                RunTask(model, inner, g, ySupport, yQuery, o.Scope);
            }
            meta.Step();
        }
        watch.Stop();
        int tasks = o.Iterations * Workload.MetaBatch;
        // Collections during the timed iterations (gen0 counts every collection, gen1 and gen2 the deeper ones) and their pause per task.
        Console.Error.WriteLine(FormattableString.Invariant(
            $"garbage collections while timed: {GC.CollectionCount(0) - gcStart.Gen0} (gen1 {GC.CollectionCount(1) - gcStart.Gen1}, gen2 {GC.CollectionCount(2) - gcStart.Gen2}), pause {(GC.GetTotalPauseDuration() - pauseStart).TotalMilliseconds / tasks:F2} ms per task"));
        double cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalMilliseconds;
        var pool = CpuBufferPool.Shared.Statistics;
        Console.Error.WriteLine(FormattableString.Invariant(
            $"buffer pool: peak in use {pool.PeakBytesInUse / 1048576.0:F0} MiB, peak held {pool.PeakBytesHeld / 1048576.0:F0} MiB, hit rate {pool.HitRate:P1}; managed heap now {GC.GetTotalMemory(false) / 1048576.0:F0} MiB"));
        return new RunResult("Higher", watch.Elapsed.TotalMilliseconds / tasks, PeakRssMiB(), cpuMs / tasks);
    }

    /// <summary>
    /// One task: 5 differentiable SGD steps on the support set, then the query loss's meta-gradient
    /// accumulated into the model's parameters. A method of its own, so nothing of the task's graph
    /// stays reachable from the caller's frame once it returns.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void RunTask(Sequential model, Sgd inner, Generator g, Tensor ySupport, Tensor yQuery, bool scoped)
    {
        using var scope = scoped ? Tensor.NewScope("task") : null;
        var xs = Tensor.Rand([Workload.Ways * Workload.Shots, 1, 28, 28], DType.Float32, g);
        var xq = Tensor.Rand([Workload.Ways * Workload.Queries, 1, 28, 28], DType.Float32, g);
        using var context = InnerLoop.Create(model, inner, copyInitialWeights: false);
        var (fmodel, diffopt) = context;
        for (int s = 0; s < Workload.InnerSteps; s++)
        {
            diffopt.Step(F.CrossEntropy(fmodel.Forward(xs), ySupport));
        }
        var queryLoss = F.CrossEntropy(fmodel.Forward(xq), yQuery);
        if (Environment.GetEnvironmentVariable("CONV_MAML_LIVE") == "1")
        {
            Console.Error.WriteLine($"live managed heap before the meta-backward: {GC.GetTotalMemory(forceFullCollection: true) / (1 << 20)} MiB");
        }
        (queryLoss / Workload.MetaBatch).Backward();
    }

    internal static Sequential BuildNet(Generator g)
    {
        var layers = new List<Module>();
        for (int i = 0; i < 3; i++)
        {
            layers.Add(new Conv2d(i == 0 ? 1 : Workload.Channels, Workload.Channels, 3, generator: g));
            layers.Add(new BatchNorm2d(Workload.Channels, momentum: 1));
            layers.Add(new Relu());
            layers.Add(new MaxPool2d(2, 2));
        }
        layers.Add(new Flatten());
        layers.Add(new Linear(Workload.Channels, Workload.Ways, generator: g));
        return new Sequential(layers);
    }

    internal static Tensor Labels(int perClass) =>
        Tensor.FromArray(Enumerable.Range(0, Workload.Ways * perClass).Select(i => (long)(i / perClass)).ToArray());

    /// <summary>VmHWM of /proc/self/status (the peak resident set), in MiB.</summary>
    internal static double PeakRssMiB()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                return double.Parse(kb, CultureInfo.InvariantCulture) / 1024;
            }
        }
        return double.NaN;
    }
}

/// <summary>--kernels: the time of each convolution primitive at the net's shapes (batch 25), to see where a task's time goes.</summary>
internal static class KernelTimes
{
    public static void Run(int threads)
    {
        Backends.Register(new ReferenceBackend(threads));
        var g = new Generator(2);
        // The GEMM alone, for the machine's attainable rate: square, and the forward's shape as im2col makes it.
        foreach (var (m, k, n) in new[] { (512, 512, 512), (64, 576, 4225) })
        {
            var a = Tensor.Rand([m, k], DType.Float32, g);
            var b = Tensor.Rand([k, n], DType.Float32, g);
            Time($"matmul [{m},{k}]x[{k},{n}]", 2.0 * m * k * n, () => Tensor.MatMul(a, b));
        }
        foreach (var (c, h) in new[] { (1, 28), (64, 13), (64, 5) })
        {
            var x = Tensor.Rand([25, c, h, h], DType.Float32, g).WithRequiresGrad();
            var w = Tensor.Rand([64, c, 3, 3], DType.Float32, g).WithRequiresGrad();
            var y = Tensor.Conv2d(x, w);
            var dy = Tensor.Rand(y.Shape, DType.Float32, g);
            double flops = 2.0 * y.Numel * c * 9;
            Time($"conv   x[25,{c},{h},{h}]", flops, () => Tensor.Conv2d(x, w));
            // Each gradient on a graph where only its own operand requires grad: a node computes the
            // gradient of every input that requires grad, so one graph for both would time both.
            var yx = Tensor.Conv2d(x, w.Detach());
            var yw = Tensor.Conv2d(x.Detach(), w);
            Time($"d x    x[25,{c},{h},{h}]", flops, () => Autograd.Grad([yx], [x], [dy], retainGraph: true)[0]!);
            Time($"d W    x[25,{c},{h},{h}]", flops, () => Autograd.Grad([yw], [w], [dy], retainGraph: true)[0]!);
        }
        // The memory-bound layers after each convolution, at the conv outputs' shapes: the rate counts each operand
        // read or written once (float32 values, int64 pool indices); only the first layer's do not fit in L2.
        foreach (int h in new[] { 26, 11, 3 })
        {
            var x = Tensor.Rand([25, 64, h, h], DType.Float32, g).WithRequiresGrad();
            var gamma = Tensor.Rand([64], DType.Float32, g).WithRequiresGrad();
            var beta = Tensor.Rand([64], DType.Float32, g).WithRequiresGrad();
            double bytes = 4.0 * x.Numel;
            Time($"bn     x[25,64,{h},{h}]", 0, () => Tensor.BatchNorm(x, null, null, gamma, beta, training: true), 2 * bytes);
            var y = Tensor.BatchNorm(x, null, null, gamma, beta, training: true);
            var dy = Tensor.Rand(y.Shape, DType.Float32, g);
            Time($"bn' dx,dγ x[25,64,{h},{h}]", 0, () => Autograd.Grad([y], [x, gamma], [dy], retainGraph: true, createGraph: true)[0]!, 3 * bytes);
            Time($"relu   x[25,64,{h},{h}]", 0, () => x.Relu(), 2 * bytes);
            if (h > 3)
            {
                Time($"pool   x[25,64,{h},{h}]", 0, () => Tensor.MaxPool2d(x, 2), 1.75 * bytes);
                var p = Tensor.MaxPool2d(x, 2);
                var dp = Tensor.Rand(p.Shape, DType.Float32, g);
                Time($"pool'  x[25,64,{h},{h}]", 0, () => Autograd.Grad([p], [x], [dp], retainGraph: true)[0]!, 1.75 * bytes);
            }
        }
    }

    private static void Time(string what, double flops, Func<Tensor> f, double bytes = 0)
    {
        f();
        // Blocks of five calls for a second; the best block's mean beside the median block's. On a shared machine
        // interference only adds time, so the best block is the kernel's own cost and the median what a run sees.
        var blocks = new List<double>();
        var total = Stopwatch.StartNew();
        while (total.ElapsedMilliseconds < 1000)
        {
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < 5; i++)
            {
                // Each call in a scope, as in the scoped benchmark: its output goes back to the buffer pool
                // at once, so the time is the kernel's and not first-touch page faults on fresh memory.
                using (Tensor.NewScope())
                {
                    f();
                }
            }
            blocks.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds / 5);
        }
        blocks.Sort();
        double best = blocks[0], median = blocks[blocks.Count / 2];
        Console.WriteLine(bytes > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{what}: best {best:F3} ms ({bytes / best / 1e6:F1} GB/s), median {median:F3} ms")
            : string.Create(CultureInfo.InvariantCulture, $"{what}: best {best:F3} ms ({flops / best / 1e6:F1} GFLOP/s), median {median:F3} ms"));
    }
}
