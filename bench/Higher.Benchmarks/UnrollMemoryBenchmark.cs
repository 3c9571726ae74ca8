using System.Diagnostics;
using System.Globalization;
using Higher.Functional;
using Higher.Implicit;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Benchmarks;

/// <summary>
/// Peak memory and time of one meta-gradient through T inner steps (issue 13), for the kept unroll
/// (<see cref="InnerLoop.Create"/>), the checkpointed unroll (<see cref="CheckpointedInnerLoop"/>, k = round(√T)) and
/// implicit differentiation (<see cref="ImplicitDiff.CustomRoot"/> with F = ∇θ MSE + θ - φ, after a plain SGD run with no tape, 10 CG iterations).
/// Problem: the 1-40-40-1 tanh MLP (1,761 weights) of the memory benchmark, 10 points, inner loss MSE + ½‖θ - φ‖²
/// (φ the model's parameters, so all three methods solve the same problem), SGD lr 0.01, float64.
/// Memory: the live managed heap (where the Reference backend keeps every buffer) above the baseline, read with a full
/// blocking GC (after the Reference pool drops its cached arrays) after the forward and at up to 40 points inside the step closure, which every method calls again in its
/// backward pass (the recomputed segments; the optimality condition, read with its graph alive), so the peak of the backward is seen too.
/// Time: a separate run without those reads.
/// <code>dotnet run -c Release --project bench/Higher.Benchmarks -- unroll-memory [T ...]</code>
/// </summary>
public static class UnrollMemoryBenchmark
{
    private const double Lr = 0.01;

    /// <summary>Runs T = 10, 100, 1000 (or the given lengths) for each method and prints a Markdown table.</summary>
    public static void Run(string[] args)
    {
        int[] lengths = args.Length > 0 ? args.Select(a => int.Parse(a, CultureInfo.InvariantCulture)).ToArray() : [10, 100, 1000];
        Console.WriteLine("| T | method | live heap after the forward | peak live heap | time | meta-gradient (first element) |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|");
        string[] methods = ["kept", "checkpointed", "implicit"];
        foreach (var method in methods)
        {
            Measure(method, 10, probe: false); // warm-up (JIT)
        }
        foreach (int t in lengths)
        {
            foreach (var method in methods)
            {
                var clock = Stopwatch.StartNew();
                double grad = Measure(method, t, probe: false).Gradient;
                double seconds = clock.Elapsed.TotalSeconds;
                var (peak, afterForward, _) = Measure(method, t, probe: true);
                string label = method == "checkpointed" ? $"checkpointed (k = {Every(t)})" : method;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {t:N0} | {label} | {afterForward / 1024.0:N0} KiB | {peak / 1024.0:N0} KiB | {seconds * 1000:N0} ms | {grad:E6} |"));
            }
        }
    }

    private static int Every(int t) => Math.Max(1, (int)Math.Round(Math.Sqrt(t)));

    private sealed class Probe(bool on, int steps, long baseline)
    {
        private readonly int _every = Math.Max(1, steps / 20);
        private int _calls;

        public long Peak { get; private set; }

        /// <summary>The live heap read at the end of the forward (the unroll, or the plain SGD run).</summary>
        public long AfterForward { get; private set; }

        public void EndOfForward()
        {
            if (on)
            {
                AfterForward = Live() - baseline;
                Peak = Math.Max(Peak, AfterForward);
            }
        }

        public void Tick()
        {
            if (on && _calls++ % _every == 0)
            {
                Read();
            }
        }

        public void Read()
        {
            if (on)
            {
                Peak = Math.Max(Peak, Live() - baseline);
            }
        }
    }

    private static (long Peak, long AfterForward, double Gradient) Measure(string method, int steps, bool probe)
    {
        var g = new Generator(3);
        var model = new Sequential(new Linear(1, 40, generator: g), new Tanh(), new Linear(40, 40, generator: g), new Tanh(), new Linear(40, 1, generator: g));
        model.To(DType.Float64);
        var x = Tensor.Uniform([10, 1], -5, 5, DType.Float64, g);
        var y = x.Sin();
        var xq = Tensor.Uniform([10, 1], -5, 5, DType.Float64, g);
        var yq = xq.Sin();
        var phi = model.Parameters().ToList();
        var p = new Probe(probe, steps, probe ? Live() : 0);

        Tensor Proximal(IReadOnlyList<Tensor> theta)
        {
            var sum = (theta[0] - phi[0]).Square().Sum();
            for (int i = 1; i < theta.Count; i++)
            {
                sum = sum + (theta[i] - phi[i]).Square().Sum();
            }
            return 0.5 * sum;
        }

        double gradient;
        switch (method)
        {
            case "kept":
            {
                using var ctx = InnerLoop.Create(model, new Sgd(phi, new SgdOptions { Lr = Lr }), copyInitialWeights: false);
                var (fmodel, diffopt) = ctx;
                for (int t = 0; t < steps; t++)
                {
                    p.Tick();
                    diffopt.Step(F.MseLoss(fmodel.Forward(x), y) + Proximal(fmodel.FastParams));
                }
                p.EndOfForward();
                gradient = Autograd.Grad(F.MseLoss(fmodel.Forward(xq), yq), phi[0]).ToDoubleArray()[0];
                break;
            }
            case "checkpointed":
            {
                using var ctx = CheckpointedInnerLoop.Create(model, new Sgd(phi, new SgdOptions { Lr = Lr }), Every(steps), copyInitialWeights: false);
                ctx.Unroll(steps, (fmodel, t) =>
                {
                    p.Tick();
                    return F.MseLoss(fmodel.Forward(x), y) + Proximal(fmodel.FastParams);
                });
                p.EndOfForward();
                gradient = Autograd.Grad(F.MseLoss(ctx.FModel.Forward(xq), yq), phi[0]).ToDoubleArray()[0];
                break;
            }
            default:
            {
                var fmodel = Patch.Monkeypatch(model, trackHigherGrads: false);
                var theta = phi.Select(t => t.Detach().Clone().WithRequiresGrad()).ToArray();
                var opt = new Sgd(theta, new SgdOptions { Lr = Lr });
                for (int t = 0; t < steps; t++)
                {
                    p.Tick();
                    opt.ZeroGrad();
                    (F.MseLoss(fmodel.Forward(x, theta), y) + Proximal(theta)).Backward();
                    opt.Step();
                }
                p.EndOfForward();
                // F = ∇θ MSE + (θ - φ), written out so the probe can read the heap while F's graph is alive.
                var root = ImplicitDiff.CustomRoot(theta.Select(t => t.Detach()).ToArray(), phi, (th, ph) =>
                {
                    var grads = Autograd.Grad([F.MseLoss(fmodel.Forward(x, th), y)], th, createGraph: true);
                    var f = th.Select((t, i) => grads[i]! + (t - ph[i])).ToArray();
                    p.Tick();
                    return f;
                }, new LinearSolveOptions { MaxIterations = 10 });
                gradient = Autograd.Grad(F.MseLoss(fmodel.Forward(xq, root.Solution), yq), phi[0]).ToDoubleArray()[0];
                break;
            }
        }
        return (p.Peak, p.AfterForward, gradient);
    }

    /// <summary>The live heap: the pool's cached arrays are dropped first, so only arrays in use are counted.</summary>
    private static long Live()
    {
        Higher.Reference.CpuBufferPool.Shared.Trim();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(forceFullCollection: true);
    }
}
