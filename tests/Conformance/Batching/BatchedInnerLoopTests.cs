using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using Higher.Optim.Schedulers;
using Higher.Samples.MamlSinusoid;

namespace Higher.Conformance.Batching;

/// <summary>
/// A task-batched inner loop (InnerLoop.CreateBatched, fast weights [T, ...]) against T task-by-task
/// contexts (InnerLoop.Create, the oracle, itself checked against PyTorch elsewhere), in float64: the
/// per-task query losses, the meta-gradient (into the model, or into each task's time-0 weights), the
/// final fast weights, the batch-norm buffers and the gradients of per-task hyperparameters all agree
/// to 1e-12 relative: max |batched - task-by-task| ≤ 1e-12·max |task-by-task|, the maximum taken over
/// every tensor of the kind (all the parameters' gradients together), because some entries are zero
/// analytically and rounding noise in float64 (a convolution's bias before a batch norm has gradient 0).
/// </summary>
public sealed class BatchedInnerLoopTests
{
    private const double Tolerance = 1e-12;

    /// <summary>One meta-step's setup: data [T, ...] for support and query, and the losses of both forms.</summary>
    internal sealed record Problem(
        Tensor SupportX, Tensor SupportY, Tensor QueryX, Tensor QueryY,
        Func<Tensor, Tensor, Tensor> Loss, Func<Tensor, Tensor, Tensor> TaskLoss)
    {
        public int Tasks => SupportX.Shape[0];
    }

    /// <summary>Options of the inner loop, the same for both forms.</summary>
    internal sealed record Options
    {
        public int Steps { get; init; } = 3;
        public bool CopyInitialWeights { get; init; }
        public bool TrackHigherGrads { get; init; } = true;
        public bool FirstOrder { get; init; }
        public int? TruncateEvery { get; init; }
        public double[]? PerTaskLr { get; init; }
        public GradCallback? GradCallback { get; init; }
        public Action<DifferentiableOptimizer, int>? BeforeStep { get; init; }
    }

    /// <summary>What both forms are compared on (per-task quantities stacked over tasks).</summary>
    internal sealed record Result(
        Tensor QueryLosses, Tensor?[] ModelGrads, Tensor?[] InitGrads, Tensor[] Final, Tensor?[] FinalGrads, Tensor? LrGrads, Tensor?[] Buffers);

    internal static Result TaskByTask(Module model, Func<IEnumerable<Tensor>, Optimizer> makeOpt, Problem p, Options o)
    {
        model.ZeroGrad();
        var opt = makeOpt(model.Parameters());
        var lrs = o.PerTaskLr?.Select(v => Tensor.Scalar(v, DType.Float64).WithRequiresGrad()).ToArray();
        var contexts = new List<InnerLoopContext>();
        var queries = new List<Tensor>();
        for (int t = 0; t < p.Tasks; t++)
        {
            var ctx = InnerLoop.Create(model, opt, copyInitialWeights: o.CopyInitialWeights, @override: lrs is null ? null : new Override().Set("lr", lrs[t]),
                trackHigherGrads: o.TrackHigherGrads, firstOrder: o.FirstOrder, truncateEvery: o.TruncateEvery);
            contexts.Add(ctx);
            var (fmodel, diffopt) = ctx;
            for (int k = 0; k < o.Steps; k++)
            {
                o.BeforeStep?.Invoke(diffopt, k);
                diffopt.Step(p.Loss(fmodel.Forward(p.SupportX[t]), p.SupportY[t]), gradCallback: o.GradCallback);
            }
            queries.Add(p.Loss(fmodel.Forward(p.QueryX[t]), p.QueryY[t]));
        }
        var total = queries[0];
        for (int t = 1; t < queries.Count; t++)
        {
            total += queries[t];
        }
        if (total.RequiresGrad)
        {
            total.Backward();
        }
        int n = model.Parameters().Count;
        var buffers = contexts[0].FModel.Buffers();
        return new Result(
            Tensor.Stack(queries).Detach(),
            model.Parameters().Select(q => q.Grad).ToArray(),
            Enumerable.Range(0, n).Select(i => StackOrNull(contexts.Select(c => c.FModel.Parameters(0)[i].Grad))).ToArray(),
            Enumerable.Range(0, n).Select(i => Tensor.Stack(contexts.Select(c => c.FModel.FastParams[i].Detach()).ToList())).ToArray(),
            Enumerable.Range(0, n).Select(i => StackOrNull(contexts.Select(c => c.FModel.FastParams[i].Grad))).ToArray(),
            lrs is null ? null : StackOrNull(lrs.Select(l => l.Grad)),
            Enumerable.Range(0, buffers.Count).Select(b => StackOrNull(contexts.Select(c => c.FModel.Buffers()[b].Value))).ToArray());
    }

    internal static Result Batched(Module model, Func<IEnumerable<Tensor>, Optimizer> makeOpt, Problem p, Options o)
    {
        model.ZeroGrad();
        var opt = makeOpt(model.Parameters());
        var lr = o.PerTaskLr is null ? null : Tensor.FromArray(o.PerTaskLr).WithRequiresGrad();
        using var ctx = InnerLoop.CreateBatched(model, opt, p.Tasks, copyInitialWeights: o.CopyInitialWeights, @override: lr is null ? null : new Override().SetPerTask("lr", lr),
            trackHigherGrads: o.TrackHigherGrads, firstOrder: o.FirstOrder, truncateEvery: o.TruncateEvery);
        var (fmodel, diffopt) = ctx;
        for (int k = 0; k < o.Steps; k++)
        {
            o.BeforeStep?.Invoke(diffopt, k);
            diffopt.Step(p.TaskLoss(fmodel.Forward(p.SupportX), p.SupportY), gradCallback: o.GradCallback);
        }
        var queries = p.TaskLoss(fmodel.Forward(p.QueryX), p.QueryY);
        Assert.Equal(new Shape(p.Tasks), queries.Shape);
        var total = queries.Sum();
        if (total.RequiresGrad)
        {
            total.Backward();
        }
        return new Result(
            queries.Detach(),
            model.Parameters().Select(q => q.Grad).ToArray(),
            fmodel.Parameters(0).Select(w => w.Grad).ToArray(),
            fmodel.FastParams.Select(w => w.Detach()).ToArray(),
            fmodel.FastParams.Select(w => w.Grad).ToArray(),
            lr?.Grad,
            fmodel.Buffers().Select(b => b.Value).ToArray());
    }

    private static Tensor? StackOrNull(IEnumerable<Tensor?> tensors)
    {
        var list = tensors.ToList();
        return list.All(t => t is null) ? null : Tensor.Stack(list.Select(t => t ?? throw new InvalidOperationException("some tasks have a gradient and some do not")).ToList());
    }

    internal static void AssertSame(Result expected, Result actual, string what, bool copyInitialWeights)
    {
        Close(expected.QueryLosses, actual.QueryLosses, $"{what}: query losses");
        Pairs(expected.ModelGrads, actual.ModelGrads, $"{what}: meta-gradient of model parameter");
        if (copyInitialWeights)
        {
            // Otherwise the task-by-task time-0 weights are the model's parameters, whose Grad is the sum
            // over tasks compared above, and the batched ones their broadcast (not a leaf).
            Pairs(expected.InitGrads, actual.InitGrads, $"{what}: gradient of time-0 fast weight");
        }
        Pairs(expected.Final, actual.Final, $"{what}: final fast weight");
        Pairs(expected.FinalGrads, actual.FinalGrads, $"{what}: gradient of final fast weight");
        Pairs([expected.LrGrads], [actual.LrGrads], $"{what}: gradient of the per-task learning rates");
        Pairs(expected.Buffers, actual.Buffers, $"{what}: buffer");
    }

    private static void Pairs(Tensor?[] expected, Tensor?[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Where(t => t is not null).Select(t => t!.ToDoubleArray().Select(Math.Abs).DefaultIfEmpty(0).Max()).DefaultIfEmpty(0).Max();
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] is null || actual[i] is null)
            {
                Assert.True(expected[i] is null && actual[i] is null, $"{what} {i}: task-by-task {(expected[i] is null ? "null" : "set")}, batched {(actual[i] is null ? "null" : "set")}.");
                continue;
            }
            Close(expected[i]!, actual[i]!, $"{what} {i}", scale);
        }
    }

    internal static void Close(Tensor expected, Tensor actual, string what, double scaleOfKind = 0)
    {
        Assert.True(expected.Shape == actual.Shape, $"{what}: shape {actual.Shape}, expected {expected.Shape}.");
        var e = expected.ToDoubleArray();
        var a = actual.ToDoubleArray();
        double scale = scaleOfKind, diff = 0;
        for (int i = 0; i < e.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(e[i]));
            diff = Math.Max(diff, Math.Abs(a[i] - e[i]));
        }
        Assert.True(diff <= Tolerance * scale, $"{what}: max |batched - task-by-task| = {diff:E3} against max |task-by-task| = {scale:E3} over the kind (tolerance {Tolerance} relative).");
        Assert.True(scale > 0 || e.Length == 0 || diff == 0, $"{what}: all zero");
    }

    // ---- problems ----

    internal static Module Mlp(ulong seed)
    {
        var g = new Generator(seed);
        return new Sequential(new Linear(1, 8, generator: g), new Tanh(), new Linear(8, 8, generator: g), new Relu(), new Linear(8, 1, generator: g)).To(DType.Float64);
    }

    internal static Problem Sinusoid(int tasks, int k, ulong seed)
    {
        var g = new Generator(seed);
        var amp = Tensor.Uniform(new Shape(tasks, 1, 1), 0.1, 5, DType.Float64, g);
        var phase = Tensor.Uniform(new Shape(tasks, 1, 1), 0, Math.PI, DType.Float64, g);
        var xs = Tensor.Uniform(new Shape(tasks, k, 1), -5, 5, DType.Float64, g);
        var xq = Tensor.Uniform(new Shape(tasks, k, 1), -5, 5, DType.Float64, g);
        return new Problem(xs, amp * (xs - phase).Sin(), xq, amp * (xq - phase).Sin(),
            (pred, y) => F.MseLoss(pred, y), TaskLosses.Mse);
    }

    private static Func<IEnumerable<Tensor>, Optimizer> Sgd(double lr = 0.05) => ps => new Sgd(ps, new SgdOptions { Lr = lr });

    /// <summary>Every optimizer with a differentiable counterpart, with options that exercise its state.</summary>
    public static TheoryData<string> OptimizerNames => new(Optimizers.Keys);

    private static readonly Dictionary<string, Func<IEnumerable<Tensor>, Optimizer>> Optimizers = new()
    {
        ["Sgd"] = ps => new Sgd(ps, new SgdOptions { Lr = 0.05 }),
        ["SgdNesterov"] = ps => new Sgd(ps, new SgdOptions { Lr = 0.05, Momentum = 0.9, Nesterov = true, WeightDecay = 0.01 }),
        ["SgdMomentumDampening"] = ps => new Sgd(ps, new SgdOptions { Lr = 0.05, Momentum = 0.5, Dampening = 0.3 }),
        ["Adam"] = ps => new Adam(ps, new AdamOptions { Lr = 0.01, WeightDecay = 0.01 }),
        ["AdamAmsgrad"] = ps => new Adam(ps, new AdamOptions { Lr = 0.01, Amsgrad = true }),
        ["AdamW"] = ps => new AdamW(ps, new AdamOptions { Lr = 0.01 }),
        ["Adagrad"] = ps => new Adagrad(ps, new AdagradOptions { Lr = 0.05, LrDecay = 0.01, InitialAccumulatorValue = 0.1 }),
        ["Adadelta"] = ps => new Adadelta(ps, new AdadeltaOptions { Lr = 0.5, WeightDecay = 0.01 }),
        ["Adamax"] = ps => new Adamax(ps, new AdamaxOptions { Lr = 0.01 }),
        ["Asgd"] = ps => new Asgd(ps, new AsgdOptions { Lr = 0.02, T0 = 1 }),
        ["RmsProp"] = ps => new RmsProp(ps, new RmsPropOptions { Lr = 0.01 }),
        ["RmsPropCenteredMomentum"] = ps => new RmsProp(ps, new RmsPropOptions { Lr = 0.01, Centered = true, Momentum = 0.5 }),
        ["Rprop"] = ps => new Rprop(ps, new RpropOptions { Lr = 0.01 }),
        ["NAdam"] = ps => new NAdam(ps, new NAdamOptions { Lr = 0.01 }),
        ["RAdam"] = ps => new RAdam(ps, new RAdamOptions { Lr = 0.01 }),
    };

    private static void Compare(Func<Module> model, Func<IEnumerable<Tensor>, Optimizer> opt, Problem p, Options o, string what)
    {
        var m = model();
        var expected = TaskByTask(m, opt, p, o);
        var actual = Batched(m, opt, p, o);
        AssertSame(expected, actual, what, o.CopyInitialWeights);
    }

    // ---- the MLP ----

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Mlp_SecondOrderMaml_MatchesTaskByTask(bool copyInitialWeights) =>
        Compare(() => Mlp(1), Sgd(), Sinusoid(5, 6, 2), new Options { CopyInitialWeights = copyInitialWeights }, $"MLP, SGD, copyInitialWeights {copyInitialWeights}");

    [Theory]
    [MemberData(nameof(OptimizerNames))]
    public void EveryOptimizer_MatchesTaskByTask(string name) =>
        Compare(() => Mlp(3), Optimizers[name], Sinusoid(4, 5, 4), new Options { Steps = 4 }, $"MLP, {name}");

    [Theory]
    [MemberData(nameof(OptimizerNames))]
    public void EveryOptimizer_PerTaskLearningRates_EachGetsItsOwnGradient(string name)
    {
        double[] lrs = [0.01, 0.02, 0.005, 0.015];
        Compare(() => Mlp(5), Optimizers[name], Sinusoid(4, 5, 6), new Options { Steps = 3, PerTaskLr = lrs, CopyInitialWeights = true }, $"MLP, {name}, per-task lr");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void FirstOrderAndTrackingOff_MatchTaskByTask(bool firstOrder, bool copyInitialWeights)
    {
        foreach (var opt in new[] { "SgdNesterov", "Adam" })
        {
            Compare(() => Mlp(7), Optimizers[opt], Sinusoid(3, 5, 8), new Options { FirstOrder = firstOrder, TrackHigherGrads = !firstOrder, CopyInitialWeights = copyInitialWeights },
                $"MLP, {opt}, {(firstOrder ? "first order" : "tracking off")}, copyInitialWeights {copyInitialWeights}");
        }
    }

    [Fact]
    public void TruncationCallbackAndSchedule_MatchTaskByTask()
    {
        Compare(() => Mlp(9), Optimizers["Adam"], Sinusoid(3, 5, 10), new Options { Steps = 5, TruncateEvery = 2 }, "MLP, Adam, truncate every 2");
        GradCallback halve = grads => grads.Select(g => g is null ? null : g * 0.5).ToList();
        Compare(() => Mlp(9), Optimizers["SgdNesterov"], Sinusoid(3, 5, 10), new Options { GradCallback = halve }, "MLP, SGD, gradient callback");
        Compare(() => Mlp(9), Optimizers["Sgd"], Sinusoid(3, 5, 10), new Options
        {
            Steps = 4,
            BeforeStep = (diffopt, k) => diffopt.ParamGroups[0]["lr"] = 0.05 * Math.Pow(0.5, k),
        }, "MLP, SGD, lr halved every step");
        Compare(() => Mlp(9), Optimizers["Adam"], Sinusoid(3, 5, 10), new Options { Steps = 4, BeforeStep = StepLrEvery2 }, "MLP, Adam, StepLR");
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<DifferentiableOptimizer, StepLR> Schedules = [];

    private static void StepLrEvery2(DifferentiableOptimizer diffopt, int k)
    {
        var schedule = Schedules.GetValue(diffopt, d => new StepLR(d, stepSize: 2, gamma: 0.3));
        if (k > 0)
        {
            schedule.Step();
        }
    }

    [Fact]
    public void OneTask_MatchesTaskByTask() =>
        Compare(() => Mlp(11), Optimizers["Adam"], Sinusoid(1, 5, 12), new Options { PerTaskLr = [0.02] }, "MLP, Adam, one task");

    // ---- higher's Omniglot conv net with batch norm ----

    /// <summary>higher's Omniglot network (examples/maml-omniglot.py) with 4 channels instead of 64: three blocks of conv 3×3, batch norm (momentum 1), ReLU, max pool 2, then a linear layer.</summary>
    internal static Module ConvNet(ulong seed, int ways, int channels = 4)
    {
        var g = new Generator(seed);
        var model = new Sequential(
            new Conv2d(1, channels, 3, generator: g), new BatchNorm2d(channels, momentum: 1), new Relu(), new MaxPool2d(2),
            new Conv2d(channels, channels, 3, generator: g), new BatchNorm2d(channels, momentum: 1), new Relu(), new MaxPool2d(2),
            new Conv2d(channels, channels, 3, generator: g), new BatchNorm2d(channels, momentum: 1), new Relu(), new MaxPool2d(2),
            new Flatten(), new Linear(channels, ways, generator: g));
        return model.To(DType.Float64);
    }

    internal static Problem Classification(int tasks, int ways, int shots, ulong seed, int size = 28)
    {
        var g = new Generator(seed);
        var labels = Tensor.FromArray(Enumerable.Range(0, tasks * ways * shots).Select(i => (long)(i % ways)).ToArray(), new Shape(tasks, ways * shots));
        return new Problem(
            Tensor.Randn(new Shape(tasks, ways * shots, 1, size, size), DType.Float64, g), labels,
            Tensor.Randn(new Shape(tasks, ways * shots, 1, size, size), DType.Float64, g), labels,
            (logits, y) => F.CrossEntropy(logits, y), (logits, y) => TaskLosses.CrossEntropy(logits, y));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ConvNetWithBatchNorm_MatchesTaskByTask(bool copyInitialWeights) =>
        Compare(() => ConvNet(21, 3), Optimizers["Sgd"], Classification(3, 3, 1, 22), new Options { Steps = 2, CopyInitialWeights = copyInitialWeights },
            $"conv net, SGD, copyInitialWeights {copyInitialWeights}");

    [Fact]
    public void ConvNetWithBatchNorm_Adam_PerTaskLr_MatchesTaskByTask() =>
        Compare(() => ConvNet(23, 3), Optimizers["Adam"], Classification(2, 3, 2, 24), new Options { Steps = 2, PerTaskLr = [0.01, 0.03] },
            "conv net, Adam, per-task lr");

    [Fact]
    public void ConvNet_EvalModeBatchNorm_MatchesTaskByTask()
    {
        var model = ConvNet(25, 3);
        // Running statistics that are not the defaults, so evaluation mode reads something.
        using (Autograd.NoGrad())
        {
            model.Forward(Tensor.Randn(new Shape(6, 1, 28, 28), DType.Float64, new Generator(26)));
        }
        model.Eval();
        var p = Classification(3, 3, 1, 27);
        var expected = TaskByTask(model, Optimizers["Sgd"], p, new Options { Steps = 2 });
        var actual = Batched(model, Optimizers["Sgd"], p, new Options { Steps = 2 });
        AssertSame(expected, actual, "conv net in evaluation mode", copyInitialWeights: false);
    }

    // ---- an LSTM ----

    /// <summary>An LSTM over a sequence and a linear read-out of its last output: a module of one's own that reads <see cref="Binding.Tasks"/> to find its time axis.</summary>
    internal sealed class LstmRegressor : Module
    {
        private readonly Lstm _lstm;
        private readonly Linear _head;

        public LstmRegressor(ulong seed, int layers = 1, bool bidirectional = false, bool gru = false)
        {
            var g = new Generator(seed);
            _lstm = RegisterModule("lstm", new Lstm(2, 5, numLayers: layers, bidirectional: bidirectional, generator: g));
            _gru = gru ? RegisterModule("gru", new Gru(5 * (bidirectional ? 2 : 1), 4, generator: g)) : null;
            _head = RegisterModule("head", new Linear(gru ? 4 : 5 * (bidirectional ? 2 : 1), 1, generator: g));
        }

        private readonly Gru? _gru;

        public override Tensor Forward(Tensor input)
        {
            int time = Binding.Tasks > 0 ? 1 : 0;
            var (output, _, _) = _lstm.Forward(input, null, null);
            if (_gru is not null)
            {
                (output, _) = _gru.Forward(output, null);
            }
            return _head.Forward(output.Select(time, output.Shape[time] - 1));
        }
    }

    internal static Problem Sequences(int tasks, int length, int batch, ulong seed)
    {
        var g = new Generator(seed);
        var xs = Tensor.Randn(new Shape(tasks, length, batch, 2), DType.Float64, g);
        var xq = Tensor.Randn(new Shape(tasks, length, batch, 2), DType.Float64, g);
        var w = Tensor.Randn(new Shape(tasks, 1, 2), DType.Float64, g);
        // Task t's target: the sum over time of w_t·x.
        Tensor Target(Tensor x) => (x * w.Unsqueeze(1)).Sum([1, 3]).Unsqueeze(-1);
        return new Problem(xs, Target(xs), xq, Target(xq), (pred, y) => F.MseLoss(pred, y), TaskLosses.Mse);
    }

    [Theory]
    [InlineData(1, false, false)]
    [InlineData(2, true, true)]
    public void Lstm_MatchesTaskByTask(int layers, bool bidirectional, bool gru) =>
        Compare(() => new LstmRegressor(31, layers, bidirectional, gru).To(DType.Float64), Optimizers["Adam"], Sequences(3, 4, 2, 32), new Options { Steps = 2 },
            $"LSTM ({layers} layers, bidirectional {bidirectional}, GRU after {gru}), Adam");

    // ---- the other layers ----

    internal sealed class Mixed : Module
    {
        private readonly Embedding _embedding;
        private readonly LayerNorm _norm;
        private readonly BatchNorm1d _bn;
        private readonly ConvTranspose2d _up;
        private readonly LstmCell _cell;
        private readonly Linear _head;

        public Mixed(ulong seed)
        {
            var g = new Generator(seed);
            _embedding = RegisterModule("embedding", new Embedding(7, 4, generator: g));
            _norm = RegisterModule("norm", new LayerNorm(4));
            _bn = RegisterModule("bn", new BatchNorm1d(4));
            _up = RegisterModule("up", new ConvTranspose2d(1, 2, 2, stride: 2, generator: g));
            _cell = RegisterModule("cell", new LstmCell(8, 3, generator: g));
            _head = RegisterModule("head", new Linear(3, 1, generator: g));
        }

        /// <summary>indices [(T,) N, 2] to [(T,) N, 1].</summary>
        public override Tensor Forward(Tensor input)
        {
            int ta = Binding.Tasks > 0 ? 1 : 0;
            var e = _norm.Forward(_embedding.Forward(input)); // [(T,) N, 2, 4]
            var pooled = _bn.Forward(e.Sum(ta + 1)); // [(T,) N, 4]
            var dims = pooled.Shape.ToArray();
            var image = pooled.Reshape([.. dims[..^1], 1, 2, 2]); // [(T,) N, 1, 2, 2]
            var up = _up.Forward(image); // [(T,) N, 2, 4, 4]
            var flat = up.Flatten(ta + 1).Narrow(-1, 0, 8); // [(T,) N, 8]
            var (h, _) = _cell.Forward(flat.Tanh(), null, null);
            return _head.Forward(h);
        }
    }

    [Fact]
    public void EmbeddingLayerNormBatchNorm1dConvTransposeLstmCell_MatchTaskByTask()
    {
        var g = new Generator(41);
        int tasks = 3, n = 4;
        var index = Tensor.FromArray(Enumerable.Range(0, tasks * n * 2).Select(i => (long)((i * 5 + 3) % 7)).ToArray(), new Shape(tasks, n, 2));
        var indexQ = Tensor.FromArray(Enumerable.Range(0, tasks * n * 2).Select(i => (long)((i * 3 + 1) % 7)).ToArray(), new Shape(tasks, n, 2));
        var p = new Problem(index, Tensor.Randn(new Shape(tasks, n, 1), DType.Float64, g), indexQ, Tensor.Randn(new Shape(tasks, n, 1), DType.Float64, g),
            (pred, y) => F.MseLoss(pred, y), TaskLosses.Mse);
        Compare(() => new Mixed(42).To(DType.Float64), Optimizers["Adam"], p, new Options { Steps = 2 }, "Embedding, LayerNorm, BatchNorm1d, ConvTranspose2d, LstmCell");
    }

    [Fact]
    public void Dropout_InEvaluationMode_IsTheIdentity_AndInTrainingDrawsOneMaskPerElement()
    {
        var model = new Sequential(new Linear(3, 64), new Dropout(0.5)).To(DType.Float64);
        using var ctx = InnerLoop.CreateBatched(model, new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 }), 4);
        var x = Tensor.Randn(new Shape(4, 8, 3), DType.Float64, new Generator(43));
        var train = ctx.FModel.Forward(x).ToDoubleArray();
        int zeros = train.Count(v => v == 0);
        // 2048 Bernoulli(0.5) draws: the zero count lies within 5 standard deviations (22.6) of 1024.
        Assert.InRange(zeros, 1024 - 114, 1024 + 114);
        model.Eval();
        var linear = (Linear)((Sequential)model)[0];
        var eval = ctx.FModel.Forward(x);
        var expected = ctx.FModel.Call(_ => linear.Forward(x));
        Close(expected, eval, "dropout in evaluation mode");
    }
}

/// <summary>The maml-sine sample's --batched mode: the same meta-training as task by task (the same tasks, drawn in the same order).</summary>
public sealed class MamlSampleBatchedTests
{
    [Fact]
    public void BatchedMetaTraining_MatchesTaskByTask()
    {
        var config = new MamlConfig { Iterations = 4, MetaBatch = 5, InnerSteps = 2, DType = DType.Float64, Seed = 3 };
        var losses = new List<double>[] { [], [] };
        var plain = Maml.MetaTrain(config, (_, l) => losses[0].Add(l));
        var batched = Maml.MetaTrain(config with { Batched = true }, (_, l) => losses[1].Add(l));
        BatchedInnerLoopTests.Close(Tensor.FromArray(losses[0].ToArray()), Tensor.FromArray(losses[1].ToArray()), "meta-batch query losses");
        var p = plain.Parameters();
        var b = batched.Parameters();
        for (int i = 0; i < p.Count; i++)
        {
            BatchedInnerLoopTests.Close(p[i], b[i], $"parameter {i} after 4 meta-iterations");
        }
    }
}
