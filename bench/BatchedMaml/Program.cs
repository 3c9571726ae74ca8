// Task-batched MAML on sinusoid regression (issue 11): one meta-step of 25 tasks x 5 inner SGD steps
// (MLP 1-40-40-1 ReLU, K = 10 support and 10 query points, inner lr 0.01, second order, meta Adam
// lr 1e-3, float32, 2 threads), timed for Higher task by task (InnerLoop.Create per task), Higher
// task-batched (InnerLoop.CreateBatched, fast weights [25, ...]), task-batched in one shard per
// thread (each its own context and scope on its own thread, meta-gradients summed) and PyTorch, unrolled with
// torch.autograd.grad(create_graph=True) and batched with functorch's vmap + grad
// (maml_sine_batched_torch.py, run with /usr/bin/python3 as a subprocess).
//
// Each meta-step runs inside Tensor.NewScope() (keeping the model and the meta-optimizer), so its
// storages go back to the host pool at the end of the step instead of to the garbage collector;
// --no-scope runs without (the figures before 2026-12-01's session 2). --loop SECONDS repeats the
// Higher rows' timed part for that long (for a sampling profiler; use with --only batched).
//
//   dotnet run -c Release --project bench/BatchedMaml -- [--iterations 200] [--warmup 20] [--warm-seconds 3] [--threads 2] [--tasks 25] [--steps 5] [--python /usr/bin/python3] [--only batched|sequential] [--no-scope] [--loop SECONDS]

using System.Diagnostics;
using System.Globalization;
using Higher;
using Higher.Bench;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using Higher.Reference;

int iterations = 200, warmup = 20, threads = 2, tasks = 25, steps = 5;
// Warm-up lasts at least this long as well: tiered compilation promotes the hot methods some time after
// their 30th call, and a row measured before that (20 meta-steps are 30 ms) reads 2-3x slow.
double warmSeconds = 3;
string python = "/usr/bin/python3", only = "";
bool scoped = true;
double loopSeconds = 0;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--iterations": iterations = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--warmup": warmup = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--warm-seconds": warmSeconds = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--threads": threads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--tasks": tasks = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--steps": steps = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--python": python = args[++i]; break;
        case "--only": only = args[++i]; break;
        case "--no-scope": scoped = false; break;
        case "--loop": loopSeconds = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
        default:
            Console.Error.WriteLine($"Unknown option {args[i]}; use --iterations N, --warmup N, --warm-seconds S, --threads N, --tasks T, --steps K, --python PATH, --only batched|sequential (Higher alone, for profiling), --no-scope, --loop SECONDS.");
            return 2;
    }
}

Backends.Register(new ReferenceBackend(threads));
Console.WriteLine(FormattableString.Invariant(
    $"Sinusoid MAML: MLP 1-40-40-1, {tasks} tasks x {steps} inner SGD steps (lr 0.01, second order), K = 10, meta Adam, float32, {threads} threads, {(scoped ? "each meta-step in Tensor.NewScope()" : "no scope (garbage collected)")}"));
Console.WriteLine(FormattableString.Invariant(
    $"{warmup} warm-up (and at least {warmSeconds} s) + {iterations} timed meta-steps each; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {Environment.ProcessorCount} cores; .NET {Environment.Version}; load {BenchProcess.LoadAverage()}"));

var rows = new List<(string Name, double Ms, double CpuMs)>();
if (only != "batched")
{
    rows.Add(Sine.Time("Higher, task by task (InnerLoop.Create per task)", batched: false, tasks, steps, iterations, warmup, warmSeconds, scoped, loopSeconds));
}
if (only != "sequential")
{
    rows.Add(Sine.Time("Higher, task-batched (InnerLoop.CreateBatched)", batched: true, tasks, steps, iterations, warmup, warmSeconds, scoped, loopSeconds));
    if (threads > 1)
    {
        rows.Add(Sine.Time($"Higher, task-batched in {threads} shards on {threads} threads", batched: true, tasks, steps, iterations, warmup, warmSeconds, scoped, loopSeconds, shards: threads));
    }
}
if (only.Length == 0)
{
    rows.AddRange(Torch(python, tasks, steps, Math.Max(20, iterations / 4), Math.Max(5, warmup / 4), threads));
}
Console.WriteLine();
Console.WriteLine("| implementation | ms per meta-step (wall) | CPU ms per meta-step |");
Console.WriteLine("|---|---:|---:|");
foreach (var (name, ms, cpu) in rows)
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {ms:F2} | {cpu:F2} |"));
}
Console.WriteLine(FormattableString.Invariant($"load after: {BenchProcess.LoadAverage()}"));
return 0;

static IEnumerable<(string, double, double)> Torch(string python, int tasks, int steps, int iterations, int warmup, int threads)
{
    string script = Path.Combine(AppContext.BaseDirectory, "maml_sine_batched_torch.py");
    if (!File.Exists(python))
    {
        Console.Error.WriteLine($"PyTorch rows absent: {python} not found.");
        return [];
    }
    string? stdout = BenchProcess.Run(python, string.Create(CultureInfo.InvariantCulture,
        $"{script} --tasks {tasks} --steps {steps} --iterations {iterations} --warmup {warmup} --threads {threads}"), "PyTorch rows");
    if (stdout is null)
    {
        return [];
    }
    // One line per implementation: name<TAB>ms<TAB>cpu ms.
    return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => l.Split('\t'))
        .Where(f => f.Length == 3)
        .Select(f => (f[0], double.Parse(f[1], CultureInfo.InvariantCulture), double.Parse(f[2], CultureInfo.InvariantCulture)))
        .ToList();
}

/// <summary>The Higher halves: the same meta-step, task by task or task-batched.</summary>
internal static class Sine
{
    private const int K = 10;
    private const double InnerLr = 0.01;

    public static (string, double, double) Time(string name, bool batched, int tasks, int steps, int iterations, int warmup, double warmSeconds, bool scoped, double loopSeconds, int shards = 1)
    {
        var g = new Generator(1);
        var model = new Sequential(new Linear(1, 40, generator: g), new Relu(), new Linear(40, 40, generator: g), new Relu(), new Linear(40, 1, generator: g));
        var meta = new Adam(model.Parameters(), new AdamOptions { Lr = 1e-3 });
        var inner = new Sgd(model.Parameters(), new SgdOptions { Lr = InnerLr });
        var watch = new Stopwatch();
        var cpuStart = TimeSpan.Zero;
        double loss = 0;
        int gcBefore = 0;
        CpuBufferPoolStatistics poolBefore = default;
        int timed = 0;
        var stepMs = new List<double>(Math.Max(iterations, 1));
        var stepCpuMs = new List<double>(Math.Max(iterations, 1));
        var warm = Stopwatch.StartNew();
        for (int it = 0; it < warmup + iterations || (loopSeconds > 0 && watch.Elapsed.TotalSeconds < loopSeconds); it++)
        {
            if (it == warmup && warm.Elapsed.TotalSeconds < warmSeconds)
            {
                warmup++;
            }
            if (it == warmup)
            {
                GC.Collect();
                gcBefore = GC.CollectionCount(0);
                poolBefore = CpuBufferPool.Shared.Statistics;
                watch.Start();
                cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
            }
            timed += it >= warmup ? 1 : 0;
            long stepStart = Stopwatch.GetTimestamp();
            double stepCpuStart = ThreadCpu.Ms();
            var scope = scoped ? Tensor.NewScope("meta-step") : null;
            scope?.Keep(model);
            scope?.Keep(meta);
            var (xs, ys, xq, yq) = Draw(g, tasks);
            meta.ZeroGrad();
            loss = shards > 1 ? Sharded(model, inner, steps, shards, xs, ys, xq, yq)
                : batched ? Batched(model, inner, steps, xs, ys, xq, yq) : TaskByTask(model, inner, steps, xs, ys, xq, yq);
            meta.Step();
            scope?.Dispose();
            if (it >= warmup)
            {
                stepMs.Add(Stopwatch.GetElapsedTime(stepStart).TotalMilliseconds);
                stepCpuMs.Add(ThreadCpu.Ms() - stepCpuStart);
            }
        }
        watch.Stop();
        double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalMilliseconds;
        var pool = CpuBufferPool.Shared.Statistics;
        long rents = pool.Rents - poolBefore.Rents, hits = pool.Hits - poolBefore.Hits;
        stepMs.Sort();
        stepCpuMs.Sort();
        // On a shared machine the mean carries every preemption; the 10th percentile and the median of
        // single meta-steps (scope disposal included, as in the mean) show the code's own speed, and the
        // calling thread's CPU clock leaves out the time spent waiting for a core (with threads > 1 it
        // misses the work done on other threads).
        Console.WriteLine(FormattableString.Invariant(
            $"  {name}: meta-step wall ms p10 {stepMs[stepMs.Count / 10]:F2}, median {stepMs[stepMs.Count / 2]:F2}; calling thread CPU ms p10 {stepCpuMs[stepCpuMs.Count / 10]:F2}, median {stepCpuMs[stepCpuMs.Count / 2]:F2}"));
        Console.WriteLine(FormattableString.Invariant(
            $"  {name}: last meta-batch query loss {loss:F3}; {timed} timed meta-steps; per meta-step {(double)rents / timed:F0} pool rents ({(rents == 0 ? 0 : 100.0 * hits / rents):F1} % hits); {GC.CollectionCount(0) - gcBefore} gen-0 collections"));
        return (name, watch.Elapsed.TotalMilliseconds / timed, cpu / timed);
    }

    /// <summary>T tasks: amplitudes in [0.1, 5], phases in [0, π], inputs in [-5, 5]; [T, K, 1] each.</summary>
    private static (Tensor, Tensor, Tensor, Tensor) Draw(Generator g, int tasks)
    {
        var amp = Tensor.Uniform(new Shape(tasks, 1, 1), 0.1, 5, DType.Float32, g);
        var phase = Tensor.Uniform(new Shape(tasks, 1, 1), 0, Math.PI, DType.Float32, g);
        var xs = Tensor.Uniform(new Shape(tasks, K, 1), -5, 5, DType.Float32, g);
        var xq = Tensor.Uniform(new Shape(tasks, K, 1), -5, 5, DType.Float32, g);
        return (xs, amp * (xs - phase).Sin(), xq, amp * (xq - phase).Sin());
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static double TaskByTask(Module model, Sgd inner, int steps, Tensor xs, Tensor ys, Tensor xq, Tensor yq)
    {
        int tasks = xs.Shape[0];
        double total = 0;
        for (int t = 0; t < tasks; t++)
        {
            using var ctx = InnerLoop.Create(model, inner, copyInitialWeights: false);
            var (fmodel, diffopt) = ctx;
            var x = xs[t];
            var y = ys[t];
            for (int k = 0; k < steps; k++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(x), y));
            }
            var q = F.MseLoss(fmodel.Forward(xq[t]), yq[t]) / tasks;
            q.Backward();
            total += q.Item();
        }
        return total;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static double Batched(Module model, Sgd inner, int steps, Tensor xs, Tensor ys, Tensor xq, Tensor yq)
    {
        using var ctx = InnerLoop.CreateBatched(model, inner, xs.Shape[0], copyInitialWeights: false);
        var (fmodel, diffopt) = ctx;
        for (int k = 0; k < steps; k++)
        {
            diffopt.Step(TaskLosses.Mse(fmodel.Forward(xs), ys));
        }
        var q = TaskLosses.Mse(fmodel.Forward(xq), yq).Mean();
        q.Backward();
        return q.Item();
    }

    /// <summary>
    /// The meta-batch split into <paramref name="shards"/> contiguous task ranges, each a task-batched
    /// context on its own thread (own scope, no shared tensor written): each returns the meta-gradient
    /// of its share of the mean query loss, and the shares are summed into the model's Grad.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static double Sharded(Module model, Sgd inner, int steps, int shards, Tensor xs, Tensor ys, Tensor xq, Tensor yq)
    {
        int tasks = xs.Shape[0];
        var parameters = model.Parameters().ToArray();
        var grads = new Tensor?[shards][];
        var losses = new double[shards];
        var work = new Task[shards];
        using (ExecutionContext.SuppressFlow())
        {
            for (int s = 0; s < shards; s++)
            {
                int shard = s, from = tasks * s / shards, to = tasks * (s + 1) / shards;
                work[s] = Task.Run(() =>
                {
                    using var scope = Tensor.NewScope("shard");
                    using var ctx = InnerLoop.CreateBatched(model, inner, to - from, copyInitialWeights: false);
                    var (fmodel, diffopt) = ctx;
                    var x = xs.Narrow(0, from, to - from);
                    var y = ys.Narrow(0, from, to - from);
                    for (int k = 0; k < steps; k++)
                    {
                        diffopt.Step(TaskLosses.Mse(fmodel.Forward(x), y));
                    }
                    var q = TaskLosses.Mse(fmodel.Forward(xq.Narrow(0, from, to - from)), yq.Narrow(0, from, to - from)).Sum() / tasks;
                    grads[shard] = [.. Autograd.Grad([q], parameters).Select(g => scope.Keep(g!))];
                    losses[shard] = q.Item();
                });
            }
        }
        Task.WaitAll(work);
        for (int i = 0; i < parameters.Length; i++)
        {
            var total = grads[0][i]!;
            for (int s = 1; s < shards; s++)
            {
                total += grads[s][i]!;
            }
            parameters[i].Grad = total;
        }
        return losses.Sum();
    }
}
