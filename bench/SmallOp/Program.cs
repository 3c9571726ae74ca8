// Small-op benchmark (issue 16): sinusoid MAML, the README's main job, with the shape of
// samples/Higher.Samples/MamlSinusoid/Maml.cs (MLP 1-40-40-1 ReLU, meta-batch 25, K = 10 support and
// 10 query points, inner SGD lr 0.01 kept on the graph, second order, meta Adam lr 1e-3, float32),
// task by task. Prints ms per meta-step for 1 and 5 inner steps at 1 and 2 threads, allocations and
// GC collections per meta-step, a phase breakdown, and the same rows from PyTorch (an unroll with
// torch.autograd.grad(create_graph=True), and functorch's vmap over the tasks), run as a subprocess.
//
//   dotnet run -c Release --project bench/SmallOp -- [--iterations 40] [--warmup 10] [--threads 1,2] [--steps 1,5] [--python /usr/bin/python3] [--no-torch]
//   dotnet run -c Release --project bench/SmallOp -- --loop 5 --seconds 20   (one configuration in a loop, for dotnet-trace)
//   --release plain|release|plain,release (default both): each task's InnerLoop.Create as written in the sample
//   (plain: the task's tensors are left to the GC), or with releaseOnDispose: true (they go back to the pool
//   when the context is disposed, so the next task's allocations are pool hits).
//
// Each thread count runs in its own process (the Reference backend's thread count is fixed when it
// is registered), so the JIT and the GC of one configuration do not warm the other.

using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Higher;
using Higher.Bench;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using Higher.Reference;

var options = BenchOptions.Parse(args);
if (options.Loop is int loopSteps)
{
    HigherRun.Loop(options, loopSteps);
    return 0;
}
if (options.Micro)
{
    Micro.Run(options.Threads[0]);
    return 0;
}
if (options.Child)
{
    Console.WriteLine(JsonSerializer.Serialize(HigherRun.Run(options)));
    return 0;
}

Console.WriteLine($"Sinusoid MAML, task by task (MLP 1-40-40-1 ReLU, meta-batch {Workload.MetaBatch}, K = {Workload.K}, inner SGD lr {Workload.InnerLr}, second order, float32)");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"{options.Warmup} warm-up + {options.Iterations} timed meta-steps per row; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {Environment.ProcessorCount} cores; .NET {Environment.Version}; load {BenchProcess.LoadAverage()}"));
var higher = new Dictionary<int, ChildResult?>();
foreach (int threads in options.Threads)
{
    higher[threads] = RunChild(options, threads);
}
var torch = options.Torch ? RunTorch(options) : null;

Console.WriteLine();
Console.WriteLine("ms per meta-step (median of the timed meta-steps; min in brackets):");
Console.WriteLine();
var header = "| implementation |";
var rule = "|---|";
foreach (int steps in options.Steps)
{
    foreach (int threads in options.Threads)
    {
        header += $" {steps} step{(steps == 1 ? "" : "s")}, {threads} thread{(threads == 1 ? "" : "s")} |";
        rule += "---:|";
    }
}
Console.WriteLine(header);
Console.WriteLine(rule);
foreach (bool release in options.Release!)
{
    string mode = release ? ", each task's context releaseOnDispose" : "";
    Console.WriteLine(Row($"Higher (Reference backend){mode}", (steps, threads) => higher[threads]?.Rows.FirstOrDefault(r => r.Steps == steps && r.Release == release) is { } r
        ? string.Create(CultureInfo.InvariantCulture, $"{r.MedianMs:F2} ({r.MinMs:F2})") : "absent"));
    Console.WriteLine(Row($"Higher{mode}, CPU ms of the calling thread (median; min in brackets)", (steps, threads) => higher[threads]?.Rows.FirstOrDefault(r => r.Steps == steps && r.Release == release) is { } r
        ? string.Create(CultureInfo.InvariantCulture, $"{r.ThreadCpuMs:F2} ({r.MinThreadCpuMs:F2})") : "absent"));
    Console.WriteLine(Row($"Higher{mode}, process CPU ms (all threads: JIT and GC too)", (steps, threads) => higher[threads]?.Rows.FirstOrDefault(r => r.Steps == steps && r.Release == release) is { } r
        ? string.Create(CultureInfo.InvariantCulture, $"{r.CpuMs:F2}") : "absent"));
}
foreach (var name in new[] { "unroll", "vmap" })
{
    string label = name == "unroll" ? "PyTorch, autograd.grad(create_graph=True) unroll" : "functorch vmap(grad) over the tasks";
    Console.WriteLine(Row(label, (steps, threads) => torch?.FirstOrDefault(r => r.Kind == name && r.Steps == steps && r.Threads == threads) is { } r
        ? string.Create(CultureInfo.InvariantCulture, $"{r.MedianMs:F2} ({r.MinMs:F2})") : "absent"));
    Console.WriteLine(Row(label + ", CPU ms", (steps, threads) => torch?.FirstOrDefault(r => r.Kind == name && r.Steps == steps && r.Threads == threads) is { } r
        ? string.Create(CultureInfo.InvariantCulture, $"{r.CpuMs:F2}") : "absent"));
}

Console.WriteLine();
Console.WriteLine("Higher, per meta-step: allocated bytes (all threads), GC collections (gen0/gen1/gen2), GC pause:");
Console.WriteLine();
Console.WriteLine("| context | steps | threads | allocated | gen0 | gen1 | gen2 | GC pause ms |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
foreach (int threads in options.Threads)
{
    foreach (var r in higher[threads]?.Rows ?? [])
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {(r.Release ? "releaseOnDispose" : "plain")} | {r.Steps} | {threads} | {r.AllocatedBytes / 1024.0:F0} KiB | {r.Gen0:F2} | {r.Gen1:F3} | {r.Gen2:F3} | {r.GcPauseMs:F2} |"));
    }
}

if (higher.Values.FirstOrDefault(h => h?.Phases.Count > 0) is { } withPhases)
{
    Console.WriteLine();
    Console.WriteLine($"Phase breakdown, {withPhases.Threads} thread(s): the same meta-step with the thread's CPU clock read around each phase (CPU ms per meta-step, mean; the clock adds a little):");
    Console.WriteLine();
    var columns = withPhases.Phases;
    Console.WriteLine("| phase | " + string.Join(" | ", columns.Select(p => $"{p.Steps} step{(p.Steps == 1 ? "" : "s")}{(p.Release ? ", releaseOnDispose" : "")}")) + " |");
    Console.WriteLine("|---|" + string.Concat(columns.Select(_ => "---:|")));
    foreach (var phase in Phases.Names)
    {
        Console.WriteLine($"| {phase} | " + string.Join(" | ", columns.Select(p =>
            string.Create(CultureInfo.InvariantCulture, $"{p.Ms[Array.IndexOf(Phases.Names, phase)]:F2}"))) + " |");
    }
    Console.WriteLine("| total | " + string.Join(" | ", columns.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Ms.Sum():F2}"))) + " |");
    Console.WriteLine("| recorded ops (tape nodes) | " + string.Join(" | ", columns.Select(p => p.Nodes.ToString(CultureInfo.InvariantCulture))) + " |");
}
return 0;

string Row(string name, Func<int, int, string> cell)
{
    var line = $"| {name} |";
    foreach (int steps in options.Steps)
    {
        foreach (int threads in options.Threads)
        {
            line += $" {cell(steps, threads)} |";
        }
    }
    return line;
}

static ChildResult? RunChild(BenchOptions o, int threads)
{
    string arguments = string.Create(CultureInfo.InvariantCulture,
        $"--child --iterations {o.Iterations} --warmup {o.Warmup} --warm-seconds {o.WarmSeconds} --threads {threads} --steps {string.Join(',', o.Steps)} --release {string.Join(',', o.Release!.Select(r => r ? "release" : "plain"))}{(o.PhaseThreads == threads ? " --phases" : "")}");
    return BenchProcess.Run(Environment.ProcessPath!, arguments, $"Higher run with {threads} thread(s)") is { } output
        ? JsonSerializer.Deserialize<ChildResult>(BenchProcess.LastLine(output))
        : null;
}

static List<TorchRow>? RunTorch(BenchOptions o)
{
    var script = Path.Combine(AppContext.BaseDirectory, "maml_sine_twin.py");
    if (!File.Exists(o.Python) || !File.Exists(script))
    {
        Console.Error.WriteLine($"PyTorch twin skipped: {(File.Exists(o.Python) ? script : o.Python)} not found.");
        return null;
    }
    string? stdout = BenchProcess.Run(o.Python, string.Create(CultureInfo.InvariantCulture,
        $"{script} --iterations {o.Iterations} --warmup {o.Warmup} --threads {string.Join(',', o.Threads)} --steps {string.Join(',', o.Steps)} --json"), "PyTorch twin");
    if (stdout is null)
    {
        return null;
    }
    var rows = new List<TorchRow>();
    foreach (var line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
    {
        if (line.StartsWith('{'))
        {
            rows.Add(JsonSerializer.Deserialize<TorchRow>(line)!);
        }
        else
        {
            Console.WriteLine($"  torch: {line}");
        }
    }
    return rows;
}

/// <summary>The workload.</summary>
internal static class Workload
{
    public const int MetaBatch = 25, K = 10;
    public const double InnerLr = 0.01, MetaLr = 1e-3;
}

/// <summary>Command-line options.</summary>
internal sealed record BenchOptions(int Iterations, int Warmup, int[] Threads, int[] Steps, string Python, bool Torch, bool Child, bool PhasesHere, int PhaseThreads, int? Loop, double Seconds, bool Micro = false, bool[]? Release = null, double WarmSeconds = 4)
{
    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions(40, 10, [1, 2], [1, 5], "/usr/bin/python3", true, false, false, 1, null, 20, false, [false, true]);
        for (int i = 0; i < args.Length; i++)
        {
            o = args[i] switch
            {
                "--iterations" => o with { Iterations = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--warmup" => o with { Warmup = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--threads" => o with { Threads = Ints(args[++i]) },
                "--steps" => o with { Steps = Ints(args[++i]) },
                "--python" => o with { Python = args[++i] },
                "--no-torch" => o with { Torch = false },
                "--child" => o with { Child = true },
                "--phases" => o with { PhasesHere = true },
                "--phase-threads" => o with { PhaseThreads = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--micro" => o with { Micro = true },
                "--loop" => o with { Loop = int.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--seconds" => o with { Seconds = double.Parse(args[++i], CultureInfo.InvariantCulture) },
                "--release" => o with { Release = Modes(args[++i]) },
                "--warm-seconds" => o with { WarmSeconds = double.Parse(args[++i], CultureInfo.InvariantCulture) },
                _ => throw new ArgumentException($"Unknown option {args[i]}; use --iterations N, --warmup N, --threads 1,2, --steps 1,5, --python PATH, --no-torch, --phase-threads N, --release plain,release, --warm-seconds S, --loop STEPS [--seconds S] (the loop uses the first --release mode)."),
            };
        }
        return o;
    }

    // "plain", "release" or both ("plain,release"): how each task's inner-loop context is opened.
    private static bool[] Modes(string list) => list.Split(',').Select(m => m switch
    {
        "plain" => false,
        "release" => true,
        _ => throw new ArgumentException($"--release takes plain, release or plain,release; got {m}."),
    }).ToArray();

    private static int[] Ints(string list) => list.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
}

/// <summary>One row of Higher's figures.</summary>
internal sealed record HigherRow(bool Release, int Steps, double MedianMs, double MinMs, double ThreadCpuMs, double MinThreadCpuMs, double CpuMs, double AllocatedBytes, double Gen0, double Gen1, double Gen2, double GcPauseMs);

/// <summary>Mean ms per meta-step of each phase, for one inner-step count.</summary>
internal sealed record PhaseRow(bool Release, int Steps, double[] Ms, long Nodes);

/// <summary>What one child process reports.</summary>
internal sealed record ChildResult(int Threads, List<HigherRow> Rows, List<PhaseRow> Phases);

/// <summary>One row printed by the PyTorch twin.</summary>
internal sealed record TorchRow(string Kind, int Steps, int Threads, double MedianMs, double MinMs, double CpuMs);

/// <summary>The phases of the instrumented meta-step.</summary>
internal static class Phases
{
    public static readonly string[] Names =
    [
        "task data (FromArray)",
        "inner-loop context (InnerLoop.Create)",
        "forward + loss (support and query)",
        "inner Autograd.Grad(createGraph)",
        "SGD update + fast-weight bookkeeping",
        "query Backward (second order)",
        "graph release (context Dispose, GC pauses)",
        "meta Adam step + ZeroGrad",
    ];

    public const int Data = 0, Context = 1, Forward = 2, Grad = 3, Update = 4, Backward = 5, Release = 6, Meta = 7;
}

/// <summary>The Higher half of the benchmark.</summary>
internal static class HigherRun
{
    public static ChildResult Run(BenchOptions o)
    {
        Backends.Register(new ReferenceBackend(o.Threads[0]));
        var rows = new List<HigherRow>();
        var phases = new List<PhaseRow>();
        foreach (bool release in o.Release!)
        foreach (int steps in o.Steps)
        {
            var job = new Job(steps, release);
            // At least the given count and --warm-seconds (default 4; the first row of a process gets
            // twice that): tiered compilation (with PGO's instrumented tier) promotes the hot methods
            // some time after their 30th call, later still on a loaded machine. With 2 s under a load
            // of 10, whichever row ran first measured 2x slow (bench/RESULTS.md, Small ops, session 2).
            var warm = Stopwatch.StartNew();
            double warmSeconds = rows.Count == 0 ? 2 * o.WarmSeconds : o.WarmSeconds;
            for (int i = 0; i < o.Warmup || warm.Elapsed.TotalSeconds < warmSeconds; i++)
            {
                job.MetaStep();
            }
            // The phase run first: it warms the code further, so that the timed run below measures
            // tier-1 code only, and its total can be compared with the timed run's CPU time (the
            // difference is what diffopt.Step adds over a hand-written step).
            if (o.PhasesHere)
            {
                phases.Add(job.MeasurePhases(o.Warmup, o.Iterations));
            }
            var times = new double[o.Iterations];
            var cpuTimes = new double[o.Iterations];
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long allocated = GC.GetTotalAllocatedBytes(precise: true);
            int g0 = GC.CollectionCount(0), g1 = GC.CollectionCount(1), g2 = GC.CollectionCount(2);
            var pause = GC.GetTotalPauseDuration();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            for (int i = 0; i < o.Iterations; i++)
            {
                double cpuStart = ThreadCpu.Ms();
                long start = Stopwatch.GetTimestamp();
                job.MetaStep();
                times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                cpuTimes[i] = ThreadCpu.Ms() - cpuStart;
            }
            double n = o.Iterations;
            double cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMilliseconds / n;
            allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated;
            Array.Sort(times);
            Array.Sort(cpuTimes);
            rows.Add(new HigherRow(release, steps, times[times.Length / 2], times[0], cpuTimes[cpuTimes.Length / 2], cpuTimes[0], cpuMs, allocated / n,
                (GC.CollectionCount(0) - g0) / n, (GC.CollectionCount(1) - g1) / n, (GC.CollectionCount(2) - g2) / n,
                (GC.GetTotalPauseDuration() - pause).TotalMilliseconds / n));
        }
        return new ChildResult(o.Threads[0], rows, phases);
    }

    /// <summary>One configuration, meta-step after meta-step, for a profiler to attach to.</summary>
    public static void Loop(BenchOptions o, int steps)
    {
        Backends.Register(new ReferenceBackend(o.Threads[0]));
        var job = new Job(steps, o.Release![0]);
        var watch = Stopwatch.StartNew();
        int count = 0;
        while (watch.Elapsed.TotalSeconds < o.Seconds)
        {
            job.MetaStep();
            count++;
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count} meta-steps with {steps} inner steps{(o.Release![0] ? " (releaseOnDispose)" : "")} in {watch.Elapsed.TotalSeconds:F1} s: {watch.Elapsed.TotalMilliseconds / count:F2} ms each"));
    }

    /// <summary>The model, its two optimizers and the task generator of one configuration.</summary>
    private sealed class Job
    {
        private readonly int _steps;
        private readonly bool _release;
        private readonly Generator _g = new(1);
        private readonly Mlp _model;
        private readonly Adam _meta;
        private readonly Sgd _inner;

        public Job(int steps, bool release)
        {
            _steps = steps;
            _release = release;
            _model = new Mlp([1, 40, 40, 1], _g);
            _meta = new Adam(_model.Parameters(), new AdamOptions { Lr = Workload.MetaLr });
            _inner = new Sgd(_model.Parameters(), new SgdOptions { Lr = Workload.InnerLr });
        }

        /// <summary>One meta-step as the sample writes it: per task, diffopt.Step on the support loss, the query loss's Backward.</summary>
        public double MetaStep()
        {
            _meta.ZeroGrad();
            double total = 0;
            for (int t = 0; t < Workload.MetaBatch; t++)
            {
                total += Task();
            }
            _meta.Step();
            return total;
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private double Task()
        {
            var task = Sinusoid.Sample(_g);
            var (xs, ys) = task.Draw(Workload.K, _g);
            var (xq, yq) = task.Draw(Workload.K, _g);
            // releaseOnDispose: what a user writes to give a finished task's tensors back to the pool
            // (the next task's allocations are then pool hits); the plain form leaves them to the GC.
            using var ctx = InnerLoop.Create(_model, _inner, copyInitialWeights: false, releaseOnDispose: _release);
            var (fmodel, diffopt) = ctx;
            for (int s = 0; s < _steps; s++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(xs), ys));
            }
            var queryLoss = F.MseLoss(fmodel.Forward(xq), yq) / Workload.MetaBatch;
            queryLoss.Backward();
            return queryLoss.Item();
        }

        /// <summary>
        /// The same meta-step with a Stopwatch around each phase. diffopt.Step is split into its two
        /// halves by doing what it does with public calls: Autograd.Grad with createGraph on the fast
        /// weights, then the SGD rule (p - lr·g, through the optimizer's own Update) and UpdateParams.
        /// </summary>
        public PhaseRow MeasurePhases(int warmup, int iterations)
        {
            var ms = new double[Phases.Names.Length];
            long nodes = 0;
            for (int i = 0; i < warmup + iterations; i++)
            {
                if (i == warmup)
                {
                    Array.Clear(ms);
                    nodes = 0;
                }
                InstrumentedMetaStep(ms, ref nodes);
            }
            for (int i = 0; i < ms.Length; i++)
            {
                ms[i] /= iterations;
            }
            return new PhaseRow(_release, _steps, ms, nodes / iterations);
        }

        private void InstrumentedMetaStep(double[] ms, ref long nodes)
        {
            var pause = GC.GetTotalPauseDuration();
            double t0 = ThreadCpu.Ms();
            _meta.ZeroGrad();
            ms[Phases.Meta] += Lap(ref t0);
            for (int t = 0; t < Workload.MetaBatch; t++)
            {
                InstrumentedTask(ms, ref nodes, ref t0);
            }
            _meta.Step();
            ms[Phases.Meta] += Lap(ref t0);
            // GC pauses happen inside whichever phase allocated last: moved to "release".
            double gc = (GC.GetTotalPauseDuration() - pause).TotalMilliseconds;
            ms[Phases.Release] += gc;
            double allocatingPhases = ms[Phases.Forward] + ms[Phases.Grad] + ms[Phases.Update] + ms[Phases.Backward];
            if (allocatingPhases > 0)
            {
                foreach (int p in new[] { Phases.Forward, Phases.Grad, Phases.Update, Phases.Backward })
                {
                    ms[p] -= gc * ms[p] / allocatingPhases;
                }
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private void InstrumentedTask(double[] ms, ref long nodes, ref double t0)
        {
            var task = Sinusoid.Sample(_g);
            var (xs, ys) = task.Draw(Workload.K, _g);
            var (xq, yq) = task.Draw(Workload.K, _g);
            ms[Phases.Data] += Lap(ref t0);
            var ctx = InnerLoop.Create(_model, _inner, copyInitialWeights: false, releaseOnDispose: _release);
            var (fmodel, _) = ctx;
            var hyper = new GroupHyperParameters(_inner.ParamGroups[0]);
            ms[Phases.Context] += Lap(ref t0);
            for (int s = 0; s < _steps; s++)
            {
                var loss = F.MseLoss(fmodel.Forward(xs), ys);
                ms[Phases.Forward] += Lap(ref t0);
                var fast = fmodel.FastParams;
                var grads = Autograd.Grad([loss], fast, createGraph: true, retainGraph: true);
                ms[Phases.Grad] += Lap(ref t0);
                var updated = new Tensor[fast.Count];
                for (int i = 0; i < updated.Length; i++)
                {
                    updated[i] = _inner.Update(fast[i], grads[i]!, new ParamState(), hyper);
                }
                fmodel.UpdateParams(updated);
                ms[Phases.Update] += Lap(ref t0);
            }
            var queryLoss = F.MseLoss(fmodel.Forward(xq), yq) / Workload.MetaBatch;
            ms[Phases.Forward] += Lap(ref t0);
            nodes += CountNodes(queryLoss);
            t0 = ThreadCpu.Ms();
            queryLoss.Backward();
            ms[Phases.Backward] += Lap(ref t0);
            ctx.Dispose();
            ms[Phases.Release] += Lap(ref t0);
        }

        // Thread CPU time, not wall time: on the shared machine a lap would otherwise include waiting for a core.
        private static double Lap(ref double t0)
        {
            double now = ThreadCpu.Ms();
            double ms = now - t0;
            t0 = now;
            return ms;
        }

        /// <summary>Recorded ops behind the query loss: the forwards, the inner gradients' graphs and the updates (the query backward records none).</summary>
        private static long CountNodes(Tensor loss)
        {
            var seen = new HashSet<Higher.Tape.Node>(ReferenceEqualityComparer.Instance);
            var stack = new Stack<Higher.Tape.Node>();
            if (loss.GradFn is { } root)
            {
                seen.Add(root);
                stack.Push(root);
            }
            while (stack.Count > 0)
            {
                foreach (var e in stack.Pop().Inputs)
                {
                    if (e.Fn is { } fn && seen.Add(fn))
                    {
                        stack.Push(fn);
                    }
                }
            }
            return seen.Count;
        }
    }
}

/// <summary>Per-op costs of the meta-step's building blocks (ns per call), to read beside the phase breakdown.</summary>
internal static class Micro
{
    public static void Run(int threads)
    {
        Backends.Register(new ReferenceBackend(threads));
        var g = new Generator(1);
        var x = Tensor.Randn([10, 40], generator: g);
        var w = Tensor.Randn([40, 40], generator: g);
        var w1 = Tensor.Randn([1, 40], generator: g);
        var x1 = Tensor.Randn([10, 1], generator: g);
        var bias = Tensor.Randn([40], generator: g);
        var xg = Tensor.Randn([10, 40], generator: g).WithRequiresGrad();
        var wg = Tensor.Randn([40, 40], generator: g).WithRequiresGrad();
        var bg = Tensor.Randn([40], generator: g).WithRequiresGrad();
        var backend = x.Backend;
        Time("allocate a [10,40] tensor (Tensor.Empty)", () => Tensor.Empty(backend, DType.Float32, x.Shape));
        Time("a scalar tensor (ScalarLike)", () => x.ScalarLike(0));
        object sink = null!;
        Time("(parts) new float[448]", () => { sink = new float[448]; return x; });
        Time("(parts) backend.AllocateUninitialized(400 floats)", () => { sink = backend.AllocateUninitialized(DType.Float32, 400); return x; });
        Time("(parts) CpuStorage.Create(400 floats, pool)", () => { sink = CpuStorage.Create(DType.Float32, 400, false); return x; });
        Time("(parts) CpuStorage.Create(400 floats, rent and return)", () => { var st = CpuStorage.Create(DType.Float32, 400, false); st.Dispose(); return x; });
        GC.KeepAlive(sink);
        Time("add [10,40]+[10,40], no tape", () => x + x);
        Time("add [10,40]+[10,40], recorded", () => xg + xg);
        Time("add [10,40]+[40] (bias broadcast), recorded", () => xg + bg);
        Time("x*2 (Affine), recorded", () => xg * 2.0);
        Time("relu [10,40], recorded", () => xg.Relu());
        Time("sum over axis 0 of [10,40] (SumTo [40])", () => x.Sum([0], keepDim: true));
        Time("sum of all [10,40]", () => x.Sum());
        Time("reshape [10,40] -> [400]", () => x.Reshape(400));
        Time("matmul [10,40]·[40,40]", () => Tensor.MatMulT(x, w, false, false));
        Time("matmul [10,40]·[40,40]ᵀ", () => Tensor.MatMulT(x, w, false, true));
        Time("matmul [10,40]ᵀ·[10,40]", () => Tensor.MatMulT(x, x, true, false));
        Time("matmul [10,40]·[1,40]ᵀ", () => Tensor.MatMulT(x, w1, false, true));
        Time("matmul [10,1]·[1,40]", () => Tensor.MatMulT(x1, w1, false, false));
        // The task-batched inner loop's products: 25 tasks, per-task weights (InnerLoop.CreateBatched). Each call
        // in its own scope, as in a meta-step, so the result's storage comes back from the pool instead of a
        // fresh (large-object-heap) array.
        var bx = Tensor.Randn([25, 10, 40], generator: g);
        var bw = Tensor.Randn([25, 40, 40], generator: g);
        var bw1 = Tensor.Randn([25, 1, 40], generator: g);
        var bx1 = Tensor.Randn([25, 10, 1], generator: g);
        Time("batched matmul 25 × [10,40]·[40,40] (scoped)", () => Scoped(x, () => Tensor.MatMulT(bx, bw, false, false)));
        Time("batched matmul 25 × [10,40]·[40,40]ᵀ (scoped)", () => Scoped(x, () => Tensor.MatMulT(bx, bw, false, true)));
        Time("batched matmul 25 × [10,40]ᵀ·[10,40] (scoped)", () => Scoped(x, () => Tensor.MatMulT(bx, bx, true, false)));
        Time("batched matmul 25 × [10,40]·[1,40]ᵀ (scoped)", () => Scoped(x, () => Tensor.MatMulT(bx, bw1, false, true)));
        Time("batched matmul 25 × [10,1]·[1,40] (scoped)", () => Scoped(x, () => Tensor.MatMulT(bx1, bw1, false, false)));
        Time("batched matmul 25 × [10,1]ᵀ·[10,40] (scoped)", () => Scoped(x, () => Tensor.MatMulT(bx1, bx, true, false)));
        Time("(parts) an empty scope", () => Scoped(x, () => x));
        Time("linear [10,40]·W[40,40]ᵀ + b, recorded", () => Tensor.Linear(xg, wg, bg));
        Time("mse loss [10,40], recorded", () => F.MseLoss(xg, x));
        Time("grad of sum(linear) wrt W, b (no graph)", () => Autograd.Grad(Tensor.Linear(xg, wg, bg).Sum(), [wg, bg])[0]!);
        Time("grad of sum(linear) wrt W, b (createGraph)", () => Autograd.Grad([Tensor.Linear(xg, wg, bg).Sum()], [wg, bg], createGraph: true)[0]!);
    }

    /// <summary>Runs op inside a tensor scope (its storages back to the pool at the end); returns <paramref name="keep"/>, made outside.</summary>
    private static Tensor Scoped(Tensor keep, Func<Tensor> op)
    {
        using (Tensor.NewScope("micro"))
        {
            op();
        }
        return keep;
    }

    private static void Time(string what, Func<Tensor> op)
    {
        // Warm by time, not count: tiered compilation promotes hot methods some time after their 30th call.
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalMilliseconds < 300)
        {
            op();
        }
        double best = double.MaxValue;
        long bytes0 = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            op();
        }
        double bytesPerCall = (GC.GetAllocatedBytesForCurrentThread() - bytes0) / 1000.0;
        for (int rep = 0; rep < 5; rep++)
        {
            const int n = 4000;
            double start = ThreadCpu.Ms();
            for (int i = 0; i < n; i++)
            {
                op();
            }
            best = Math.Min(best, (ThreadCpu.Ms() - start) * 1e6 / n);
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{best,9:F0} ns (thread CPU) {bytesPerCall,7:F0} B allocated  {what}"));
    }
}

/// <summary>Sinusoid tasks: amplitude U(0.1, 5), phase U(0, π), x U(-5, 5).</summary>
internal sealed class Sinusoid(double amplitude, double phase)
{
    public static Sinusoid Sample(Generator g) => new(0.1 + 4.9 * g.NextDouble(), Math.PI * g.NextDouble());

    public (Tensor X, Tensor Y) Draw(int k, Generator g)
    {
        var x = new float[k];
        var y = new float[k];
        for (int i = 0; i < k; i++)
        {
            double xi = -5 + 10 * g.NextDouble();
            x[i] = (float)xi;
            y[i] = (float)(amplitude * Math.Sin(xi - phase));
        }
        return (Tensor.FromArray(x, [k, 1]), Tensor.FromArray(y, [k, 1]));
    }
}

/// <summary>The 1-40-40-1 ReLU network of the sample, initialised as PyTorch's Linear.</summary>
internal sealed class Mlp : Module
{
    private readonly Parameter[] _weights;
    private readonly Parameter[] _biases;

    public Mlp(int[] sizes, Generator g)
    {
        _weights = new Parameter[sizes.Length - 1];
        _biases = new Parameter[sizes.Length - 1];
        for (int i = 0; i < _weights.Length; i++)
        {
            double bound = 1 / Math.Sqrt(sizes[i]);
            _weights[i] = RegisterParameter($"w{i}", Tensor.Uniform([sizes[i + 1], sizes[i]], -bound, bound, DType.Float32, g))!;
            _biases[i] = RegisterParameter($"b{i}", Tensor.Uniform([sizes[i + 1]], -bound, bound, DType.Float32, g))!;
        }
    }

    public override Tensor Forward(Tensor input)
    {
        var h = input;
        for (int i = 0; i < _weights.Length; i++)
        {
            h = Tensor.Linear(h, _weights[i].Value, _biases[i].Value);
            if (i < _weights.Length - 1)
            {
                h = h.Relu();
            }
        }
        return h;
    }
}
