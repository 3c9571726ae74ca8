using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Higher.Data;
using Higher.Samples.FewShot;
using ScottPlot;
using Spectre.Console;

namespace Higher.Samples;

/// <summary>
/// fewshot: conv MAML on Fashion-MNIST. Meta-training on episodes of the meta-train classes (the
/// training images), meta-test on episodes of the disjoint meta-test classes (the test images),
/// against a network trained from scratch on each support set and one pre-trained on the
/// meta-train classes and fine-tuned the same way.
/// </summary>
internal static class FewShotCommand
{
    public static Command Create()
    {
        var d = new FewShotConfig();
        var shots = new Option<int[]>("--shots")
        {
            Description = "Support images per class; one MAML model is meta-trained per value (e.g. --shots 1 5)",
            DefaultValueFactory = _ => [1, 5],
            AllowMultipleArgumentsPerToken = true,
        };
        shots.Validators.Add(r =>
        {
            if (Cli.TryValue(r, out int[] v) && (v.Length == 0 || v.Any(s => s < 1) || v.Distinct().Count() != v.Length))
            {
                r.AddError($"--shots must be distinct integers of at least 1; got [{string.Join(", ", v)}].");
            }
        });
        var ways = Cli.Int("--ways", "Classes per task (N)", d.Ways);
        var iterations = Cli.Int("--iterations", "MAML meta-iterations per shot setting", d.Iterations);
        var metaBatch = Cli.Int("--meta-batch", "Tasks per meta-iteration", d.MetaBatch);
        var innerSteps = Cli.Int("--inner-steps", "Inner SGD steps per meta-training task", d.InnerSteps);
        var evalSteps = Cli.Int("--eval-steps", "SGD steps on each test support set (accuracy is recorded after 0..this many)", d.EvalSteps);
        var innerLr = Cli.Positive("--inner-lr", "Inner and test-time SGD learning rate", d.InnerLr);
        var metaLr = Cli.Positive("--meta-lr", "Adam learning rate of meta-training and pre-training", d.MetaLr);
        var trainQueries = Cli.Int("--train-queries", "Query images per class in a meta-training task", d.TrainQueries);
        var testQueries = Cli.Int("--test-queries", "Query images per class in a test task", d.TestQueries);
        var tasks = Cli.Int("--tasks", "Meta-test tasks (the paper-style run: 600)", d.Tasks);
        var channels = Cli.Int("--channels", "Channels of each convolution (higher's network: 64)", d.Channels);
        var pretrainIterations = Cli.Int("--pretrain-iterations", "Supervised steps of the pre-trained baseline", d.PretrainIterations);
        var pretrainBatch = Cli.Int("--pretrain-batch", "Images per pre-training step", d.PretrainBatch);
        var firstOrder = new Option<bool>("--first-order") { Description = "First-order MAML (no second derivatives through the inner steps)" };
        var testClasses = new Option<int[]>("--test-classes")
        {
            Description = "The meta-test classes (0-9); the other classes are the meta-train classes",
            DefaultValueFactory = _ => [5, 6, 7, 8, 9],
            AllowMultipleArgumentsPerToken = true,
        };
        testClasses.Validators.Add(r =>
        {
            if (Cli.TryValue(r, out int[] v) && (v.Length is 0 or >= 10 || v.Any(c => c is < 0 or > 9) || v.Distinct().Count() != v.Length))
            {
                r.AddError($"--test-classes must be 1 to 9 distinct classes in 0-9 (the rest are the meta-train classes); got [{string.Join(", ", v)}].");
            }
        });
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights, meta-training tasks and pre-training batches", DefaultValueFactory = _ => d.Seed };
        var testSeed = new Option<ulong>("--test-seed") { Description = "Seed of the meta-test tasks and the per-task fresh weights", DefaultValueFactory = _ => d.TestSeed };
        var data = new Option<string>("--data") { Description = "Folder of the Fashion-MNIST IDX files", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
        var device = Cli.DeviceOption();
        var outDir = Cli.OutOption("fewshot");
        var command = new Command("fewshot", "Conv MAML on Fashion-MNIST, N-way K-shot on held-out classes, against scratch and pre-trained baselines (needs dataset-fashion-mnist)")
        {
            shots, ways, iterations, metaBatch, innerSteps, evalSteps, innerLr, metaLr, trainQueries, testQueries, tasks, channels,
            pretrainIterations, pretrainBatch, firstOrder, testClasses, seed, testSeed, data, device, outDir,
        };
        command.SetAction(r =>
        {
            int n = r.GetValue(ways);
            int[] test = r.GetValue(testClasses)!;
            int[] train = Enumerable.Range(0, 10).Except(test).ToArray();
            if (n > test.Length || n > train.Length)
            {
                Console.Error.WriteLine($"--ways {n}: needs at least {n} meta-test and {n} meta-train classes; --test-classes [{string.Join(", ", test)}] leaves {test.Length} and {train.Length} (see higher-samples fewshot --help)");
                return 2;
            }
            if (Cli.ResolveDevice(r.GetValue(device)!) is not { } dev)
            {
                return 2;
            }
            string dir = r.GetValue(data)!;
            if (!Directory.Exists(dir))
            {
                Console.Error.WriteLine($"--data: no folder {dir} (install Debian's dataset-fashion-mnist, or pass the folder of the IDX files).");
                return 2;
            }
            var config = d with
            {
                Ways = n,
                Iterations = r.GetValue(iterations),
                MetaBatch = r.GetValue(metaBatch),
                InnerSteps = r.GetValue(innerSteps),
                EvalSteps = r.GetValue(evalSteps),
                InnerLr = r.GetValue(innerLr),
                MetaLr = r.GetValue(metaLr),
                TrainQueries = r.GetValue(trainQueries),
                TestQueries = r.GetValue(testQueries),
                Tasks = r.GetValue(tasks),
                Channels = r.GetValue(channels),
                PretrainIterations = r.GetValue(pretrainIterations),
                PretrainBatch = r.GetValue(pretrainBatch),
                FirstOrder = r.GetValue(firstOrder),
                Seed = r.GetValue(seed),
                TestSeed = r.GetValue(testSeed),
                Device = dev,
            };
            return Run(config, r.GetValue(shots)!, train, test, dir, Cli.PrepareOut(r.GetValue(outDir)!));
        });
        return command;
    }

    private static int Run(FewShotConfig c, int[] shotSettings, int[] trainClasses, int[] testClasses, string dataDir, string outDir)
    {
        var total = Stopwatch.StartNew();
        FashionMnist data;
        try
        {
            data = FashionMnist.Load(dataDir);
        }
        catch (FileNotFoundException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
        var trainImages = data.TrainImages.Reshape(-1, 1, 28, 28).To(c.Device);
        var testImages = data.TestImages.Reshape(-1, 1, 28, 28).To(c.Device);
        string Names(int[] classes) => string.Join(", ", classes.Select(k => $"{k} {FashionMnist.ClassNames[k]}"));
        Console.WriteLine($"Fashion-MNIST loaded in {total.Elapsed.TotalSeconds:F1} s. Meta-train classes (training images): {Names(trainClasses)}; meta-test classes (test images): {Names(testClasses)}");
        Console.WriteLine(FormattableString.Invariant(
            $"{c.Ways}-way, shots [{string.Join(", ", shotSettings)}] on {c.Device}: higher's Omniglot net ({c.Channels} channels), {c.Iterations} meta-iterations of {c.MetaBatch} tasks, {c.InnerSteps} inner SGD steps lr {c.InnerLr}, {c.TrainQueries} queries/class{(c.FirstOrder ? ", first-order" : ", second order")}, meta Adam lr {c.MetaLr}; baseline pre-trained {c.PretrainIterations} steps of {c.PretrainBatch}; {c.Tasks} test tasks of {c.TestQueries} queries/class, {c.EvalSteps} test-time steps"));

        var pretrainLoss = new List<double>();
        var mamlLoss = shotSettings.ToDictionary(s => s, _ => new List<double>());
        var mamlAccuracy = shotSettings.ToDictionary(s => s, _ => new List<double>());
        var results = new Dictionary<int, FewShotResults>();
        var seconds = new Dictionary<string, double>();
        Higher.Nn.Sequential? pretrained = null;

        void Work(Func<string, int, Action<double>> stage)
        {
            var clock = Stopwatch.StartNew();
            var tick = stage("pre-training (baseline)", c.PretrainIterations);
            pretrained = FewShotMaml.Pretrain(c, trainImages, data.TrainLabels, trainClasses, (_, loss, _) =>
            {
                pretrainLoss.Add(loss);
                tick(loss);
            });
            seconds["pretrain"] = clock.Elapsed.TotalSeconds;
            foreach (int k in shotSettings)
            {
                var kc = c with { Shots = k };
                var trainSampler = new EpisodeSampler(trainImages, data.TrainLabels, trainClasses, c.Ways, k, c.TrainQueries);
                var testSampler = new EpisodeSampler(testImages, data.TestLabels, testClasses, c.Ways, k, c.TestQueries);
                clock.Restart();
                tick = stage($"MAML {k}-shot meta-training", c.Iterations);
                var maml = FewShotMaml.MetaTrain(kc, trainSampler, 28, (_, loss, accuracy) =>
                {
                    mamlLoss[k].Add(loss);
                    mamlAccuracy[k].Add(accuracy);
                    tick(loss);
                });
                seconds[$"maml{k}"] = clock.Elapsed.TotalSeconds;
                clock.Restart();
                tick = stage($"{k}-shot evaluation", c.Tasks);
                results[k] = FewShotMaml.Evaluate(kc, maml, pretrained!, testSampler, _ => tick(double.NaN));
                seconds[$"eval{k}"] = clock.Elapsed.TotalSeconds;
            }
        }

        if (Progress.Interactive)
        {
            AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx => Work((label, count) =>
                {
                    var task = ctx.AddTask(label, maxValue: count);
                    var losses = new List<double>();
                    return loss =>
                    {
                        if (double.IsNaN(loss))
                        {
                            task.Increment(1);
                        }
                        else
                        {
                            Progress.Update(task, label, losses, loss);
                        }
                    };
                }));
        }
        else
        {
            var clock = Stopwatch.StartNew();
            Work((label, count) =>
            {
                int done = 0, every = Math.Max(1, count / 5);
                var losses = new List<double>();
                clock.Restart();
                return loss =>
                {
                    done++;
                    if (!double.IsNaN(loss))
                    {
                        losses.Add(loss);
                    }
                    if (done % every == 0 || done == count)
                    {
                        string lossText = losses.Count > 0 ? FormattableString.Invariant($", loss {Plots.Smooth(losses, every)[^1]:F4}") : "";
                        Console.WriteLine(FormattableString.Invariant($"  {label}: {done}/{count}{lossText} ({clock.Elapsed.TotalSeconds:F0} s)"));
                    }
                };
            });
        }

        PrintTable(c, shotSettings, results, seconds);
        WriteCsv(Path.Combine(outDir, "accuracy.csv"), c, shotSettings, results);
        WritePlots(c, shotSettings, results, pretrainLoss, mamlLoss, mamlAccuracy, outDir);
        Console.WriteLine(FormattableString.Invariant($"total {total.Elapsed.TotalSeconds:F0} s"));
        return 0;
    }

    private static IEnumerable<(string Name, Func<FewShotResults, StepAccuracies> Pick)> Models =>
    [
        ("MAML", r => r.Maml),
        ("pre-trained, fine-tuned", r => r.Pretrained),
        ("from scratch", r => r.Scratch),
    ];

    private static void PrintTable(FewShotConfig c, int[] shotSettings, Dictionary<int, FewShotResults> results, Dictionary<string, double> seconds)
    {
        // Accuracy after as many steps as meta-training took, and after all the test-time steps.
        int[] columns = c.InnerSteps < c.EvalSteps ? [c.InnerSteps, c.EvalSteps] : [c.EvalSteps];
        Console.WriteLine();
        Console.WriteLine(FormattableString.Invariant(
            $"{c.Ways}-way accuracy on the meta-test classes, mean ± 95 % interval over {c.Tasks} tasks ({c.TestQueries} queries/class), after {string.Join(" and ", columns)} SGD steps (lr {c.InnerLr}) on the support set:"));
        Console.WriteLine($"| model | {string.Join(" | ", shotSettings.SelectMany(k => columns.Select(s => $"{k}-shot, {s} steps")))} | train time |");
        Console.WriteLine($"|---|{string.Concat(shotSettings.SelectMany(_ => columns.Select(_ => "---:|")))}---:|");
        foreach (var (name, pick) in Models)
        {
            string cells = string.Join(" | ", shotSettings.SelectMany(k => columns.Select(s => pick(results[k]).At(s).ToString())));
            string time = name switch
            {
                "MAML" => string.Join(" + ", shotSettings.Select(k => FormattableString.Invariant($"{seconds[$"maml{k}"]:F0} s"))),
                "pre-trained, fine-tuned" => FormattableString.Invariant($"{seconds["pretrain"]:F0} s"),
                _ => "0 s",
            };
            Console.WriteLine($"| {name} | {cells} | {time} |");
        }
        Console.WriteLine(FormattableString.Invariant(
            $"(chance: {100.0 / c.Ways:F0} %; evaluation took {string.Join(" + ", shotSettings.Select(k => FormattableString.Invariant($"{seconds[$"eval{k}"]:F0} s")))})"));
    }

    private static void WriteCsv(string path, FewShotConfig c, int[] shotSettings, Dictionary<int, FewShotResults> results)
    {
        using var w = new StreamWriter(path);
        w.WriteLine("shots,model,steps,mean_accuracy,ci95_half_width,tasks");
        foreach (int k in shotSettings)
        {
            foreach (var (name, pick) in Models)
            {
                for (int s = 0; s <= c.EvalSteps; s++)
                {
                    var a = pick(results[k]).At(s);
                    w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{k},{name},{s},{a.Mean:F6},{a.HalfWidth:F6},{c.Tasks}"));
                }
            }
        }
    }

    private static void WritePlots(FewShotConfig c, int[] shotSettings, Dictionary<int, FewShotResults> results, List<double> pretrainLoss,
        Dictionary<int, List<double>> mamlLoss, Dictionary<int, List<double>> mamlAccuracy, string outDir)
    {
        int window = Math.Max(1, c.Iterations / 20);
        var lossSeries = shotSettings.Select(k => new Plots.Series($"MAML {k}-shot: query loss after {c.InnerSteps} inner steps", Plots.Range(mamlLoss[k].Count), Plots.Smooth(mamlLoss[k], window))).ToList();
        lossSeries.Add(new Plots.Series("pre-training: cross-entropy of its batches", Plots.Range(pretrainLoss.Count), Plots.Smooth(pretrainLoss, Math.Max(1, c.PretrainIterations / 20)), Dashed: true));
        Plots.Save(Path.Combine(outDir, "meta_loss.png"), $"Training loss (moving average over {window} iterations)", "meta-iteration (MAML) or step (pre-training)", "cross-entropy", lossSeries);
        Plots.Save(Path.Combine(outDir, "meta_accuracy.png"), $"MAML meta-training: query accuracy after {c.InnerSteps} inner steps (average of {window})", "meta-iteration", "accuracy",
            shotSettings.Select(k => new Plots.Series($"MAML {k}-shot", Plots.Range(mamlAccuracy[k].Count), Plots.Smooth(mamlAccuracy[k], window))), legend: Alignment.LowerRight);

        var files = new List<string> { "meta_loss.png", "meta_accuracy.png" };
        foreach (int k in shotSettings)
        {
            string file = $"accuracy_{k}shot.png";
            var plot = new Plot();
            var steps = Plots.Range(c.EvalSteps + 1);
            foreach (var (name, pick) in Models)
            {
                var a = pick(results[k]);
                var intervals = Enumerable.Range(0, c.EvalSteps + 1).Select(a.At).ToArray();
                var band = plot.Add.FillY(steps, intervals.Select(i => 100 * (i.Mean - i.HalfWidth)).ToArray(), intervals.Select(i => 100 * (i.Mean + i.HalfWidth)).ToArray());
                var line = plot.Add.ScatterLine(steps, intervals.Select(i => 100 * i.Mean).ToArray());
                band.FillColor = line.Color.WithAlpha(0.2);
                band.LineColor = Colors.Transparent;
                line.LegendText = name;
                line.LineWidth = 2;
                line.MarkerSize = 5;
            }
            var chance = plot.Add.HorizontalLine(100.0 / c.Ways);
            chance.LinePattern = LinePattern.Dashed;
            chance.Color = Colors.Gray;
            chance.LegendText = "chance";
            plot.Title(FormattableString.Invariant($"{c.Ways}-way {k}-shot on the meta-test classes ({c.Tasks} tasks, bands: 95 % interval)"));
            plot.XLabel("SGD steps on the support set");
            plot.YLabel("query accuracy (%)");
            plot.ShowLegend(Alignment.LowerRight);
            plot.SavePng(Path.Combine(outDir, file), 800, 500);
            files.Add(file);
        }
        Console.WriteLine();
        Console.WriteLine($"Plots written to {outDir}: {string.Join(", ", files)} (and accuracy.csv)");
    }
}
