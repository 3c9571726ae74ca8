using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Higher.Functional;
using Higher.Implicit;
using Higher.Optim;
using Higher.Samples.MamlSinusoid;

namespace Higher.Samples;

/// <summary>
/// imaml-sine: iMAML (Rajeswaran et al. 2019) on sinusoid regression. Each task is adapted by a plain SGD run with no
/// tape on the support loss plus λ/2 ‖θ - φ‖²; the meta-gradient comes from the implicit function theorem (conjugate
/// gradient on Hessian-vector products), so its cost does not grow with the number of inner steps. The meta-gradient's
/// norm is capped at 10 (far from a minimum H + λI can be indefinite, and the CG residual printed says how well it was solved).
/// </summary>
internal static class ImamlSineCommand
{
    private sealed record Config
    {
        public int Iterations { get; init; } = 1000;
        public int MetaBatch { get; init; } = 10;
        public int InnerSteps { get; init; } = 16;
        public double InnerLr { get; init; } = 0.01;
        public double Lambda { get; init; } = 4.0;
        public int CgSteps { get; init; } = 5;
        public double MetaLr { get; init; } = 1e-3;
        public int K { get; init; } = 10;
        public int EvalTasks { get; init; } = 100;
        public ulong Seed { get; init; } = 1;
        public DType DType { get; init; } = DType.Float32;
        public Device Device { get; init; } = Device.Cpu;
    }

    public static Command Create()
    {
        var defaults = new Config();
        var iterations = Cli.Int("--iterations", "Meta-iterations", defaults.Iterations);
        var metaBatch = Cli.Int("--meta-batch", "Tasks per meta-iteration", defaults.MetaBatch);
        var innerSteps = Cli.Int("--inner-steps", "Plain SGD steps of each task's adaptation (no tape is kept)", defaults.InnerSteps);
        var innerLr = Cli.Positive("--inner-lr", "Learning rate of the adaptation", defaults.InnerLr);
        var lambda = Cli.Positive("--lambda", "Strength λ of the proximal term λ/2 ‖θ - φ‖²", defaults.Lambda);
        var cgSteps = Cli.Int("--cg-steps", "Conjugate-gradient iterations of each implicit meta-gradient", defaults.CgSteps);
        var evalTasks = Cli.Int("--eval-tasks", "Held-out tasks for the evaluation", defaults.EvalTasks);
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights and the tasks", DefaultValueFactory = _ => defaults.Seed };
        var float64 = new Option<bool>("--float64") { Description = "Compute in float64 instead of float32" };
        var device = Cli.DeviceOption();
        var command = new Command("imaml-sine", "iMAML on sinusoid regression: implicit meta-gradients of a plain-SGD adaptation")
        {
            iterations, metaBatch, innerSteps, innerLr, lambda, cgSteps, evalTasks, seed, float64, device,
        };
        command.SetAction(r =>
        {
            if (Cli.ResolveDevice(r.GetValue(device)!) is not { } d)
            {
                return 2;
            }
            return Run(defaults with
            {
                Iterations = r.GetValue(iterations),
                MetaBatch = r.GetValue(metaBatch),
                InnerSteps = r.GetValue(innerSteps),
                InnerLr = r.GetValue(innerLr),
                Lambda = r.GetValue(lambda),
                CgSteps = r.GetValue(cgSteps),
                EvalTasks = r.GetValue(evalTasks),
                Seed = r.GetValue(seed),
                DType = r.GetValue(float64) ? DType.Float64 : DType.Float32,
                Device = d,
            });
        });
        return command;
    }

    private static Tensor Mse(Tensor a, Tensor b) => F.MseLoss(a, b);

    /// <summary>θ* ≈ argmin support loss + λ/2 ‖θ - φ‖², by plain SGD on leaves (no graph is kept across steps).</summary>
    private static Tensor[] Adapt(FunctionalModule fmodel, IReadOnlyList<Tensor> phi, Tensor xs, Tensor ys, Config c, int steps)
    {
        var anchor = phi.Select(p => p.Detach()).ToArray();
        var theta = anchor.Select(p => p.Clone().Detach().WithRequiresGrad()).ToArray();
        var opt = new Sgd(theta, new SgdOptions { Lr = c.InnerLr });
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            var loss = Mse(fmodel.Forward(xs, theta), ys);
            for (int i = 0; i < theta.Length; i++)
            {
                loss = loss + 0.5 * c.Lambda * (theta[i] - anchor[i]).Square().Sum();
            }
            loss.Backward();
            opt.Step();
        }
        return theta.Select(t => t.Detach()).ToArray();
    }

    private static int Run(Config c)
    {
        Console.WriteLine(FormattableString.Invariant(
            $"iMAML sinusoid on {c.Device}: {c.Iterations} meta-iterations, meta-batch {c.MetaBatch}, K={c.K}, inner plain SGD lr {c.InnerLr} x{c.InnerSteps}, λ {c.Lambda}, CG x{c.CgSteps}, meta Adam lr {c.MetaLr}, {c.DType.Name()}"));
        var g = new Generator(c.Seed);
        var model = new Mlp([1, 40, 40, 1], g, c.DType);
        if (c.Device != Device.Cpu)
        {
            model.To(c.Device);
        }
        var phi = model.Parameters().ToList();
        var fmodel = Patch.Monkeypatch(model, trackHigherGrads: false);
        var metaOpt = new Adam(phi, new AdamOptions { Lr = c.MetaLr });
        var solve = new LinearSolveOptions { Solver = LinearSolver.ConjugateGradient, MaxIterations = c.CgSteps, Tolerance = 1e-6 };
        var before = Evaluate(fmodel, phi, c);
        var clock = Stopwatch.StartNew();
        int every = Math.Max(1, c.Iterations / 10);
        double window = 0, residual = 0;
        int skipped = 0;
        for (int it = 0; it < c.Iterations; it++)
        {
            metaOpt.ZeroGrad();
            for (int t = 0; t < c.MetaBatch; t++)
            {
                var task = SinusoidTask.Sample(g);
                var (xs, ys) = task.Draw(c.K, g, c.DType, c.Device);
                var (xq, yq) = task.Draw(c.K, g, c.DType, c.Device);
                var thetaStar = Adapt(fmodel, phi, xs, ys, c, c.InnerSteps);
                var root = ImplicitDiff.Minimum(thetaStar, phi, (theta, _) => Mse(fmodel.Forward(xs, theta), ys), proximal: c.Lambda, solve);
                var query = Mse(fmodel.Forward(xq, root.Solution), yq) * (1.0 / c.MetaBatch);
                if (!double.IsFinite(query.Item()))
                {
                    // The adaptation diverged on this task: its meta-gradient would poison the model.
                    skipped++;
                    continue;
                }
                query.Backward();
                window += query.Item();
                residual += root.LastSolve!.RelativeResidual / c.MetaBatch;
            }
            // Far from a minimum, H + λI can be indefinite and CG's answer poor (its residual is printed): the meta-gradient's norm is capped.
            GradClipping.ClipGradNorm(phi, 10);
            metaOpt.Step();
            if ((it + 1) % every == 0)
            {
                Console.WriteLine(FormattableString.Invariant(
                    $"  meta-iteration {it + 1,6}: mean query loss after adaptation {window / every:F4}, CG relative residual {residual / every:E1}{(skipped > 0 ? $", {skipped} diverged adaptations skipped" : "")}  ({clock.Elapsed.TotalSeconds:F1} s)"));
                window = 0;
                residual = 0;
                skipped = 0;
            }
        }
        var after = Evaluate(fmodel, phi, c);
        Console.WriteLine();
        Console.WriteLine($"Query MSE on {c.EvalTasks} held-out tasks ({c.K} support points, 100 query points, the same regularized plain-SGD adaptation):");
        Console.WriteLine($"| model | 0 steps | {c.InnerSteps} steps |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| initialization (before meta-training) | {before.Zero:F3} | {before.Adapted:F3} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| iMAML | {after.Zero:F3} | {after.Adapted:F3} |"));
        Console.WriteLine(FormattableString.Invariant($"meta-training {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    private static (double Zero, double Adapted) Evaluate(FunctionalModule fmodel, IReadOnlyList<Tensor> phi, Config c)
    {
        var g = new Generator(c.Seed + 1000);
        double zero = 0, adapted = 0;
        for (int t = 0; t < c.EvalTasks; t++)
        {
            var task = SinusoidTask.Sample(g);
            var (xs, ys) = task.Draw(c.K, g, c.DType, c.Device);
            var (xq, yq) = task.Draw(100, g, c.DType, c.Device);
            var theta = Adapt(fmodel, phi, xs, ys, c, c.InnerSteps);
            using var noGrad = Autograd.NoGrad();
            zero += Mse(fmodel.Forward(xq, phi), yq).Item() / c.EvalTasks;
            adapted += Mse(fmodel.Forward(xq, theta), yq).Item() / c.EvalTasks;
        }
        return (zero, adapted);
    }
}
