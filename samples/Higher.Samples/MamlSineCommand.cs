using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Higher.Distributed;
using Higher.Samples.MamlSinusoid;
using Spectre.Console;

namespace Higher.Samples;

/// <summary>
/// maml-sine: MAML on sinusoid regression (Finn et al. 2017, §5.1) against a model pre-trained on
/// all tasks, both adapted the same way on held-out tasks; plots of the training losses and of the
/// adapted curves.
/// </summary>
internal static class MamlSineCommand
{
    public static Command Create()
    {
        // 4000 meta-iterations (the paper runs 10000) keep the whole job within two minutes on two shared cores.
        var defaults = new MamlConfig { Iterations = 4000 };
        var iterations = Cli.Int("--iterations", "Meta-iterations (and baseline iterations)", defaults.Iterations);
        var metaBatch = Cli.Int("--meta-batch", "Tasks per meta-iteration", defaults.MetaBatch);
        var evalTasks = Cli.Int("--eval-tasks", "Held-out tasks for the evaluation", defaults.EvalTasks);
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights and the tasks", DefaultValueFactory = _ => defaults.Seed };
        var firstOrder = new Option<bool>("--first-order") { Description = "First-order MAML (no second derivatives)" };
        var float64 = new Option<bool>("--float64") { Description = "Compute in float64 instead of float32" };
        var distributed = new Option<bool>("--distributed") { Description = "Data-parallel meta-training over MPI ranks: start with mpirun -np N (Open MPI); each rank adapts its share of every meta-batch" };
        var batched = new Option<bool>("--batched") { Description = "Run each meta-batch as one task-batched computation (fast weights [T, ...]) instead of task by task" };
        var device = Cli.DeviceOption();
        var outDir = Cli.OutOption("maml-sine");
        var command = new Command("maml-sine", "MAML on sinusoid regression against a pre-trained baseline (the README's main job)")
        {
            iterations, metaBatch, evalTasks, seed, firstOrder, float64, batched, distributed, device, outDir,
        };
        command.SetAction(r =>
        {
            if (Cli.ResolveDevice(r.GetValue(device)!) is not { } d)
            {
                return 2;
            }
            var config = defaults with
            {
                Iterations = r.GetValue(iterations),
                MetaBatch = r.GetValue(metaBatch),
                EvalTasks = r.GetValue(evalTasks),
                Seed = r.GetValue(seed),
                FirstOrder = r.GetValue(firstOrder),
                Batched = r.GetValue(batched),
                DType = r.GetValue(float64) ? DType.Float64 : DType.Float32,
                Device = d,
            };
            return r.GetValue(distributed) ? RunDistributed(config, r.GetValue(outDir)!) : Run(config, Cli.PrepareOut(r.GetValue(outDir)!));
        });
        return command;
    }

    /// <summary>
    /// Every rank meta-trains (its share of each meta-batch, <see cref="DistributedShare"/>); rank 0 then
    /// trains the baseline, evaluates and plots as the single-process run does, and the others exit.
    /// </summary>
    private static int RunDistributed(MamlConfig config, string outDir)
    {
        if (!Communicator.IsAvailable(out string reason))
        {
            Console.Error.WriteLine($"maml-sine --distributed: {reason}");
            return 2;
        }
        using var world = Communicator.Initialize();
        var mine = world.Split(config.MetaBatch);
        if (world.IsRoot)
        {
            Console.WriteLine(FormattableString.Invariant(
                $"Data-parallel over {world.Size} MPI ranks ({world.Library}); rank 0 adapts tasks [{mine.Start}, {mine.End}) of each meta-batch of {config.MetaBatch}."));
        }
        if (!world.IsRoot)
        {
            _ = Maml.MetaTrain(config, share: new DistributedShare(world));
            return 0;
        }
        return Run(config, Cli.PrepareOut(outDir), new DistributedShare(world));
    }

    private static int Run(MamlConfig config, string outDir, IMetaBatchShare? share = null)
    {
        Console.WriteLine(FormattableString.Invariant(
            $"MAML sinusoid on {config.Device}: {config.Iterations} meta-iterations, meta-batch {config.MetaBatch}, K={config.K}, inner SGD lr {config.InnerLr} x{config.InnerSteps}, meta Adam lr {config.MetaLr}, {config.DType.Name()}{(config.FirstOrder ? ", first-order" : "")}{(config.Batched ? ", task-batched" : "")}"));
        var mamlLoss = new List<double>(config.Iterations);
        var baseLoss = new List<double>(config.Iterations);
        Mlp? maml = null, baseline = null;
        double mamlSeconds = 0, baselineSeconds = 0;
        var clock = Stopwatch.StartNew();
        if (Progress.Interactive && share is null)
        {
            AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var t1 = ctx.AddTask("MAML meta-training", maxValue: config.Iterations);
                    var t2 = ctx.AddTask("pre-training (baseline)", maxValue: config.Iterations, autoStart: false);
                    maml = Maml.MetaTrain(config, (it, loss) => Progress.Update(t1, "MAML meta-training", mamlLoss, loss));
                    mamlSeconds = clock.Elapsed.TotalSeconds;
                    clock.Restart();
                    t2.StartTask();
                    baseline = Maml.Pretrain(config, (it, loss) => Progress.Update(t2, "pre-training (baseline)", baseLoss, loss));
                    baselineSeconds = clock.Elapsed.TotalSeconds;
                });
        }
        else
        {
            int every = Math.Max(1, config.Iterations / 10);
            maml = Maml.MetaTrain(config, share: share, log: (it, loss) =>
            {
                mamlLoss.Add(loss);
                if ((it + 1) % every == 0)
                {
                    Console.WriteLine(FormattableString.Invariant($"  meta-iteration {it + 1,6}: mean query loss after adaptation {Plots.Smooth(mamlLoss, every)[^1]:F4}  ({clock.Elapsed.TotalSeconds:F1} s)"));
                }
            });
            mamlSeconds = clock.Elapsed.TotalSeconds;
            clock.Restart();
            baseline = Maml.Pretrain(config, (_, loss) => baseLoss.Add(loss));
            baselineSeconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine(FormattableString.Invariant($"  baseline pre-trained in {baselineSeconds:F1} s"));
        }

        var mamlEval = Maml.Evaluate(maml!, config);
        var baseEval = Maml.Evaluate(baseline!, config);
        Console.WriteLine();
        Console.WriteLine($"Query MSE on {config.EvalTasks} held-out tasks ({config.K} support points, {config.EvalQueryPoints} query points, SGD lr {config.InnerLr}):");
        Console.WriteLine($"| model | {string.Join(" | ", config.EvalSteps.Select(s => $"{s} steps"))} | train time |");
        Console.WriteLine($"|---|{string.Concat(config.EvalSteps.Select(_ => "---|"))}---|");
        Console.WriteLine($"| MAML | {string.Join(" | ", mamlEval.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)))} | {mamlSeconds:F0} s |");
        Console.WriteLine($"| pretrained on all tasks | {string.Join(" | ", baseEval.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)))} | {baselineSeconds:F0} s |");

        WritePlots(config, maml!, baseline!, mamlLoss, baseLoss, outDir);
        return 0;
    }

    private static void WritePlots(MamlConfig config, Mlp maml, Mlp baseline, List<double> mamlLoss, List<double> baseLoss, string outDir)
    {
        int window = Math.Max(1, config.Iterations / 100);
        var its = Plots.Range(mamlLoss.Count);
        Plots.Save(Path.Combine(outDir, "meta_loss.png"), $"Training loss (moving average over {window} iterations)", "iteration", "MSE",
        [
            new Plots.Series("MAML: query loss after one adaptation step", its, Plots.Smooth(mamlLoss, window)),
            new Plots.Series("baseline: loss on all tasks jointly", Plots.Range(baseLoss.Count), Plots.Smooth(baseLoss, window)),
        ], logY: true);

        // One held-out task, drawn from its own seed: the true curve, the K support points, and each model after 0, 1 and 10 steps.
        var g = new Generator(2024);
        var task = SinusoidTask.Sample(g);
        var (xs, ys) = task.Draw(config.K, g, config.DType, config.Device);
        var gridX = Enumerable.Range(0, 201).Select(i => -5 + (i * 0.05)).ToArray();
        var grid = Tensor.FromArray(gridX, [gridX.Length, 1], config.Device).To(config.DType);
        var truth = gridX.Select(x => task.Amplitude * Math.Sin(x - task.Phase)).ToArray();
        int[] steps = [0, 1, 10];
        foreach (var (name, model, file) in new[] { ("MAML", maml, "adapted_maml.png"), ("pre-trained baseline", baseline, "adapted_pretrained.png") })
        {
            var curves = Maml.AdaptedCurves(model, config, xs, ys, grid, steps);
            var series = new List<Plots.Series> { new("true sinusoid", gridX, truth, Dashed: true) };
            series.AddRange(steps.Select((s, i) => new Plots.Series($"{name} after {s} step{(s == 1 ? "" : "s")}", gridX, curves[i])));
            series.Add(new Plots.Series($"{config.K} support points", xs.ToDoubleArray(), ys.ToDoubleArray(), Markers: true));
            Plots.Save(Path.Combine(outDir, file),
                FormattableString.Invariant($"{name} adapted with SGD lr {config.InnerLr} (A = {task.Amplitude:F2}, phase = {task.Phase:F2})"), "x", "y", series,
                legend: ScottPlot.Alignment.LowerLeft);
        }
        Console.WriteLine();
        Console.WriteLine($"Plots written to {outDir}: meta_loss.png, adapted_maml.png, adapted_pretrained.png");
    }
}

/// <summary>The live progress display: loss in the description, time left in the last column.</summary>
internal static class Progress
{
    /// <summary>True when stdout is a terminal that can redraw (otherwise the commands print log lines).</summary>
    public static bool Interactive => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    public static void Update(ProgressTask task, string label, List<double> losses, double loss)
    {
        losses.Add(loss);
        task.Increment(1);
        if (losses.Count % 10 == 0)
        {
            task.Description = FormattableString.Invariant($"{label}  loss {Plots.Smooth(losses, 50)[^1],7:F4}");
        }
    }
}
