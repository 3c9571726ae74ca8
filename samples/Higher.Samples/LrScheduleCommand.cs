using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Higher.Data;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Samples;

/// <summary>
/// lr-schedule: learns a learning-rate schedule by differentiating the validation loss through a long unroll of SGD
/// (500 steps by default) on Fashion-MNIST, in bounded memory: the unroll is a <see cref="CheckpointedInnerLoop"/>
/// that keeps every k-th state (k ≈ √T) and recomputes the segments in the backward pass. The schedule is
/// piecewise-linear in log-lr between a few knots; Adam steps the knots on the meta-gradient (the hypergradient).
/// </summary>
internal static class LrScheduleCommand
{
    private sealed record Config
    {
        public int Steps { get; init; } = 500;
        public int MetaIterations { get; init; } = 20;
        public int CheckpointEvery { get; init; }
        public int Batch { get; init; } = 64;
        public int Hidden { get; init; } = 32;
        public int Knots { get; init; } = 6;
        public double InitialLr { get; init; } = 0.02;
        public double MetaLr { get; init; } = 0.1;
        public string Data { get; init; } = FashionMnist.DefaultDirectory;
        public ulong Seed { get; init; }
        public Device Device { get; init; } = Device.Cpu;
    }

    public static Command Create()
    {
        var defaults = new Config();
        var steps = Cli.Int("--steps", "Inner SGD steps unrolled (the length T of the unroll)", defaults.Steps);
        var metaIterations = Cli.Int("--meta-iterations", "Meta-iterations (one unroll and one hypergradient each)", defaults.MetaIterations);
        var checkpointEvery = Cli.Int("--checkpoint-every", "Steps per recomputed segment k (0: √T)", defaults.CheckpointEvery, min: 0);
        var batch = Cli.Int("--batch", "Mini-batch size of the inner steps", defaults.Batch);
        var hidden = Cli.Int("--hidden", "Hidden units of the 784-h-10 MLP", defaults.Hidden);
        var knots = Cli.Int("--knots", "Knots of the piecewise-linear log-lr schedule", defaults.Knots, min: 2);
        var initialLr = Cli.Positive("--initial-lr", "Learning rate the schedule starts from (constant)", defaults.InitialLr);
        var metaLr = Cli.Positive("--meta-lr", "Adam learning rate on the log-lr knots", defaults.MetaLr);
        var data = new Option<string>("--data") { Description = "Folder of the IDX files", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights and the batches", DefaultValueFactory = _ => 0 };
        var device = Cli.DeviceOption();
        var command = new Command("lr-schedule", "Learns a learning-rate schedule through a long SGD unroll on Fashion-MNIST, in bounded memory (needs dataset-fashion-mnist)")
        {
            steps, metaIterations, checkpointEvery, batch, hidden, knots, initialLr, metaLr, data, seed, device,
        };
        command.SetAction(r =>
        {
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
            return Run(defaults with
            {
                Steps = r.GetValue(steps),
                MetaIterations = r.GetValue(metaIterations),
                CheckpointEvery = r.GetValue(checkpointEvery),
                Batch = r.GetValue(batch),
                Hidden = r.GetValue(hidden),
                Knots = r.GetValue(knots),
                InitialLr = r.GetValue(initialLr),
                MetaLr = r.GetValue(metaLr),
                Data = dir,
                Seed = r.GetValue(seed),
                Device = dev,
            });
        });
        return command;
    }

    /// <summary>Interpolation weights of step t over the knots (piecewise linear in t).</summary>
    private static double[] KnotWeights(int t, int steps, int knots)
    {
        var w = new double[knots];
        double position = steps <= 1 ? 0 : t * (knots - 1) / (double)(steps - 1);
        int k = Math.Min((int)position, knots - 2);
        double f = position - k;
        w[k] = 1 - f;
        w[k + 1] = f;
        return w;
    }

    private static int Run(Config c)
    {
        var clock = Stopwatch.StartNew();
        FashionMnist data;
        try
        {
            data = FashionMnist.Load(c.Data);
        }
        catch (FileNotFoundException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
        var images = data.TrainImages.Reshape(-1, 28 * 28).To(c.Device);
        var labels = data.TrainLabels.To(c.Device);
        var testX = data.TestImages.Reshape(-1, 28 * 28).To(c.Device);
        var testY = data.TestLabels.To(c.Device);
        // The last 10,000 training images are the validation set of the hypergradient; the inner steps draw from the rest.
        int trainCount = images.Shape[0] - 10_000;
        var valX = images.Narrow(0, trainCount, 10_000);
        var valY = labels.Narrow(0, trainCount, 10_000);
        int k = c.CheckpointEvery > 0 ? c.CheckpointEvery : Math.Max(1, (int)Math.Round(Math.Sqrt(c.Steps)));
        Console.WriteLine(FormattableString.Invariant(
            $"lr-schedule on {c.Device}: MLP 784-{c.Hidden}-10, {c.Steps} SGD steps of batch {c.Batch} per unroll, checkpoint every {k} steps, {c.Knots} log-lr knots from lr {c.InitialLr}, meta Adam lr {c.MetaLr}, {c.MetaIterations} meta-iterations"));

        var logKnots = Tensor.Full([c.Knots], Math.Log(c.InitialLr), DType.Float32, c.Device).WithRequiresGrad();
        var metaOpt = new Adam([logKnots], new AdamOptions { Lr = c.MetaLr });
        var knotWeights = Enumerable.Range(0, c.Steps).Select(t => Tensor.FromArray(KnotWeights(t, c.Steps, c.Knots).Select(v => (float)v).ToArray(), [c.Knots], c.Device)).ToArray();
        var sampler = new Generator(c.Seed);
        for (int it = 0; it < c.MetaIterations; it++)
        {
            var iterationClock = Stopwatch.StartNew();
            var model = NewModel(c, sampler);
            var (xs, ys) = Batches(images, labels, trainCount, c, sampler);
            var valIndex = Tensor.FromArray(Enumerable.Range(0, 1000).Select(_ => (long)sampler.NextInt(10_000)).ToArray(), null, c.Device);
            var (vx, vy) = (valX.IndexSelect(0, valIndex), valY.IndexSelect(0, valIndex));
            metaOpt.ZeroGrad();
            long baseline = LiveHeap();
            using var ctx = CheckpointedInnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = c.InitialLr }), k);
            ctx.Unroll(c.Steps, (fmodel, t) => F.CrossEntropy(fmodel.Forward(xs[t]), ys[t]),
                t => new Override().Set("lr", (knotWeights[t] * logKnots).Sum().Exp()));
            long retained = LiveHeap() - baseline;
            var valLoss = F.CrossEntropy(ctx.FModel.Forward(vx), vy);
            valLoss.Backward();
            metaOpt.Step();
            var lrs = logKnots.Detach().Exp().ToDoubleArray();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  meta-iteration {it + 1,3}: validation loss after the unroll {valLoss.Item():F4}, knots' lr now [{string.Join(", ", lrs.Select(v => v.ToString("F4", CultureInfo.InvariantCulture)))}], retained by the unroll {retained / 1048576.0:F1} MiB, {iterationClock.Elapsed.TotalSeconds:F1} s"));
        }

        // The learned schedule against the constant initial lr, from a fresh initialization, with a plain SGD (no tape).
        var learned = logKnots.Detach().ToDoubleArray();
        var evalSampler = new Generator(c.Seed + 1);
        var initSeed = evalSampler.NextInt(int.MaxValue);
        var (exs, eys) = Batches(images, labels, trainCount, c, evalSampler);
        double constant = TrainAndTest(c, (ulong)initSeed, exs, eys, _ => c.InitialLr, testX, testY);
        double schedule = TrainAndTest(c, (ulong)initSeed, exs, eys, t => Math.Exp(KnotWeights(t, c.Steps, c.Knots).Select((w, i) => w * learned[i]).Sum()), testX, testY);
        Console.WriteLine();
        Console.WriteLine($"Test accuracy after {c.Steps} plain SGD steps from a fresh initialization:");
        Console.WriteLine("| schedule | test accuracy |");
        Console.WriteLine("|---|---:|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| constant lr {c.InitialLr} | {constant:P2} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| learned (hypergradient through the unroll) | {schedule:P2} |"));
        Console.WriteLine(FormattableString.Invariant($"total {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    /// <summary>The live managed heap (where the CPU backend keeps its buffers), the pool's cached arrays dropped first.</summary>
    private static long LiveHeap()
    {
        Higher.Reference.CpuBufferPool.Shared.Trim();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static Sequential NewModel(Config c, Generator g)
    {
        var model = new Sequential(new Linear(28 * 28, c.Hidden, generator: g), new Relu(), new Linear(c.Hidden, 10, generator: g));
        model.To(c.Device);
        return model;
    }

    /// <summary>The unroll's batches, drawn before it (a recomputed segment must see the same batch for the same step).</summary>
    private static (Tensor[] Xs, Tensor[] Ys) Batches(Tensor images, Tensor labels, int trainCount, Config c, Generator g)
    {
        var xs = new Tensor[c.Steps];
        var ys = new Tensor[c.Steps];
        for (int t = 0; t < c.Steps; t++)
        {
            var index = Tensor.FromArray(Enumerable.Range(0, c.Batch).Select(_ => (long)g.NextInt(trainCount)).ToArray(), null, c.Device);
            xs[t] = images.IndexSelect(0, index);
            ys[t] = labels.IndexSelect(0, index);
        }
        return (xs, ys);
    }

    private static double TrainAndTest(Config c, ulong seed, Tensor[] xs, Tensor[] ys, Func<int, double> lrAt, Tensor testX, Tensor testY)
    {
        var model = NewModel(c, new Generator(seed));
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = lrAt(0) });
        for (int t = 0; t < c.Steps; t++)
        {
            opt.ParamGroups[0]["lr"] = lrAt(t);
            opt.ZeroGrad();
            F.CrossEntropy(model.Forward(xs[t]), ys[t]).Backward();
            opt.Step();
        }
        using var noGrad = Autograd.NoGrad();
        var predicted = model.Forward(testX).ArgMax(1);
        return predicted.Eq(testY).Cast(DType.Int64).Sum().Item() / testY.Shape[0];
    }
}
