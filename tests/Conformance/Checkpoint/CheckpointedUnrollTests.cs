using Higher.Conformance.Higher;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Checkpoint;

/// <summary>
/// Checkpointed unrolls (<see cref="CheckpointedInnerLoop"/>) against the fully kept unroll of the same steps
/// (<see cref="InnerLoop.Create"/> and a loop of <see cref="DifferentiableOptimizer.Step"/>): the final fast weights and
/// the meta-gradients with respect to the initial weights and a learning-rate tensor agree to 1e-12 in float64, for
/// every differentiable optimizer (each with its state: momentum, moments, accumulators), with dropout replaying its
/// masks, for segment lengths that divide the unroll, do not, and exceed it.
/// Runs in the serial collection: a recomputed segment rewinds the generators its steps drew from, and a concurrent
/// draw from <see cref="Generator.Default"/> by another test would look like a non-deterministic step.
/// </summary>
[Collection(nameof(CheckpointedDefaultGeneratorTests))]
public sealed class CheckpointedUnrollTests
{
    private const int Steps = 7;

    /// <summary>Hyperparameters that make every optimizer's state matter within 7 steps.</summary>
    private static Dictionary<string, double> Options(string name) => name switch
    {
        "sgd" => new() { ["lr"] = 0.1, ["momentum"] = 0.9 },
        "adadelta" => new() { ["lr"] = 1.0 },
        "rprop" => new() { ["lr"] = 0.01 },
        _ => new() { ["lr"] = 0.05 },
    };

    internal static Sequential Net(bool dropout, Generator? dropoutGenerator, bool batchNorm = false)
    {
        var g = new Generator(11);
        var layers = new List<Module> { new Linear(4, 6, generator: g), new Tanh() };
        if (batchNorm)
        {
            layers.Add(new BatchNorm1d(6));
        }
        if (dropout)
        {
            layers.Add(new Dropout(0.3, dropoutGenerator));
        }
        layers.Add(new Linear(6, 2, generator: g));
        var model = new Sequential(layers);
        model.To(DType.Float64);
        return model;
    }

    internal sealed record Data(Tensor[] Xs, Tensor[] Ys, Tensor Xq, Tensor Yq);

    internal static Data MakeData(int steps)
    {
        var g = new Generator(12);
        return new Data(
            Enumerable.Range(0, steps).Select(_ => TestModels.Rand(g, 5, 4)).ToArray(),
            Enumerable.Range(0, steps).Select(_ => TestModels.Rand(g, 5, 2)).ToArray(),
            TestModels.Rand(g, 5, 4), TestModels.Rand(g, 5, 2));
    }

    internal sealed record Outcome(double[][] Final, double[][] Grads);

    /// <summary>The kept unroll: a loop of diffopt.Step; gradients of the query loss w.r.t. the model's parameters and lr.</summary>
    internal static Outcome Kept(Module model, Optimizer opt, Data d, int steps, Tensor lr)
    {
        using var ctx = InnerLoop.Create(model, opt, copyInitialWeights: false, @override: new Override().Set("lr", lr));
        var (fmodel, diffopt) = ctx;
        for (int t = 0; t < steps; t++)
        {
            diffopt.Step(F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]));
        }
        var q = F.MseLoss(fmodel.Forward(d.Xq), d.Yq);
        var grads = Autograd.Grad([q], [.. model.Parameters(), lr]);
        return new Outcome(fmodel.FastParams.Select(p => p.ToDoubleArray()).ToArray(), grads.Select(g => g!.ToDoubleArray()).ToArray());
    }

    internal static Outcome Checkpointed(Module model, Optimizer opt, Data d, int steps, Tensor lr, int every)
    {
        using var ctx = CheckpointedInnerLoop.Create(model, opt, every, copyInitialWeights: false, @override: new Override().Set("lr", lr));
        ctx.Unroll(steps, (fmodel, t) => F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]));
        var q = F.MseLoss(ctx.FModel.Forward(d.Xq), d.Yq);
        var grads = Autograd.Grad([q], [.. model.Parameters(), lr]);
        return new Outcome(ctx.FModel.FastParams.Select(p => p.ToDoubleArray()).ToArray(), grads.Select(g => g!.ToDoubleArray()).ToArray());
    }

    internal static void AssertClose(double[][] expected, double[][] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.SelectMany(e => e).Select(Math.Abs).DefaultIfEmpty(0).Max();
        Assert.True(scale > 0, $"{what}: the expected values are all zero, so the comparison would prove nothing.");
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i].Length, actual[i].Length);
            for (int j = 0; j < expected[i].Length; j++)
            {
                double err = Math.Abs(expected[i][j] - actual[i][j]);
                Assert.True(err <= tolerance * scale, $"{what}: tensor {i} element {j}: kept {expected[i][j]:R}, checkpointed {actual[i][j]:R} (|diff| {err:E2}, scale {scale:E2}).");
            }
        }
    }

    private static Tensor Lr(string name) => Tensor.Scalar(Options(name)["lr"], DType.Float64).WithRequiresGrad();

    private static Optimizer Opt(string name, Module model) => Optimizers.Create(name, model.Parameters(), Options(name));

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in Optimizers.Names)
        {
            foreach (int every in new[] { 1, 3, 10 })
            {
                data.Add(name, every);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Checkpointed_EqualsKeptUnroll(string optimizer, int every)
    {
        var d = MakeData(Steps);
        var keptModel = Net(dropout: false, null);
        var kept = Kept(keptModel, Opt(optimizer, keptModel), d, Steps, Lr(optimizer));
        var model = Net(dropout: false, null);
        var checkpointed = Checkpointed(model, Opt(optimizer, model), d, Steps, Lr(optimizer), every);
        AssertClose(kept.Final, checkpointed.Final, 1e-12, $"{optimizer}, every {every}: final fast weights");
        AssertClose(kept.Grads, checkpointed.Grads, 1e-12, $"{optimizer}, every {every}: meta-gradients");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Checkpointed_WithDropout_ReplaysTheMasks(string optimizer, int every)
    {
        var d = MakeData(Steps);
        var keptModel = Net(dropout: true, new Generator(99));
        var kept = Kept(keptModel, Opt(optimizer, keptModel), d, Steps, Lr(optimizer));
        var model = Net(dropout: true, new Generator(99));
        var checkpointed = Checkpointed(model, Opt(optimizer, model), d, Steps, Lr(optimizer), every);
        AssertClose(kept.Final, checkpointed.Final, 1e-12, $"{optimizer}, every {every}, dropout: final fast weights");
        AssertClose(kept.Grads, checkpointed.Grads, 1e-12, $"{optimizer}, every {every}, dropout: meta-gradients");
    }

    /// <summary>Without the rewind the recomputed masks differ: the same unroll with other masks gives another meta-gradient, so the test above can fail.</summary>
    [Fact]
    public void Dropout_MasksMatter()
    {
        var d = MakeData(Steps);
        var a = Net(dropout: true, new Generator(99));
        var b = Net(dropout: true, new Generator(100));
        var ka = Kept(a, Opt("adam", a), d, Steps, Lr("adam"));
        var kb = Kept(b, Opt("adam", b), d, Steps, Lr("adam"));
        Assert.True(Math.Abs(ka.Grads[0][0] - kb.Grads[0][0]) > 1e-6, "other dropout masks should change the meta-gradient");
    }

    /// <summary>BatchNorm's running statistics (buffers) are restored at each recomputed segment and end as the kept unroll's.</summary>
    [Fact]
    public void Checkpointed_WithBatchNorm_EqualsKept_AndBuffersMatch()
    {
        var d = MakeData(Steps);
        var keptModel = Net(dropout: false, null, batchNorm: true);
        var keptOpt = Opt("adam", keptModel);
        double[][] keptBuffers;
        Outcome kept;
        using (var ctx = InnerLoop.Create(keptModel, keptOpt, copyInitialWeights: false, @override: new Override().Set("lr", Lr("adam"))))
        {
            var (fmodel, diffopt) = ctx;
            for (int t = 0; t < Steps; t++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]));
            }
            var q = F.MseLoss(fmodel.Forward(d.Xq), d.Yq);
            kept = new Outcome([], Autograd.Grad([q], [.. keptModel.Parameters()]).Select(g => g!.ToDoubleArray()).ToArray());
            keptBuffers = fmodel.Buffers().Where(b => b.Value is not null && b.Value.DType == DType.Float64).Select(b => b.Value!.ToDoubleArray()).ToArray();
        }
        var model = Net(dropout: false, null, batchNorm: true);
        using var cctx = CheckpointedInnerLoop.Create(model, Opt("adam", model), 3, copyInitialWeights: false, @override: new Override().Set("lr", Lr("adam")));
        cctx.Unroll(Steps, (fmodel, t) => F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]));
        var cq = F.MseLoss(cctx.FModel.Forward(d.Xq), d.Yq);
        var grads = Autograd.Grad([cq], [.. model.Parameters()]).Select(g => g!.ToDoubleArray()).ToArray();
        var buffers = cctx.FModel.Buffers().Where(b => b.Value is not null && b.Value.DType == DType.Float64).Select(b => b.Value!.ToDoubleArray()).ToArray();
        AssertClose(kept.Grads, grads, 1e-12, "batchnorm: meta-gradients");
        Assert.NotEmpty(keptBuffers);
        AssertClose(keptBuffers, buffers, 1e-12, "batchnorm: running statistics after the unroll");
    }

    /// <summary>A per-step learning-rate schedule (overrideAt), a captured meta-parameter, several unroll calls, and Backward into Grad.</summary>
    [Fact]
    public void Checkpointed_ScheduleAndCapturedLeaves_EqualKept()
    {
        var d = MakeData(Steps);
        var logLr = Tensor.FromArray(Enumerable.Range(0, Steps).Select(i => Math.Log(0.05 + 0.01 * i)).ToArray(), [Steps]).To(DType.Float64).WithRequiresGrad();
        var weight = Tensor.Scalar(0.7, DType.Float64).WithRequiresGrad();
        var scale = weight * 2.0; // a non-leaf computed before the unroll: its gradient reaches the leaf behind it

        var keptModel = Net(dropout: false, null);
        using (var ctx = InnerLoop.Create(keptModel, Opt("sgd", keptModel), copyInitialWeights: false))
        {
            var (fmodel, diffopt) = ctx;
            for (int t = 0; t < Steps; t++)
            {
                diffopt.Step(scale * F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]), @override: new Override().Set("lr", logLr.Select(0, t).Exp()));
            }
            F.MseLoss(fmodel.Forward(d.Xq), d.Yq).Backward();
        }
        var expected = keptModel.Parameters().Select(p => p.Grad!.ToDoubleArray()).Append(logLr.Grad!.ToDoubleArray()).Append(weight.Grad!.ToDoubleArray()).ToArray();
        logLr.Grad = null;
        weight.Grad = null;

        var model = Net(dropout: false, null);
        using var cctx = CheckpointedInnerLoop.Create(model, Opt("sgd", model), 2, copyInitialWeights: false);
        var scale2 = weight * 2.0; // the kept run's backward freed the graph of the first
        InnerStepLoss loss = (fmodel, t) => scale2 * F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]);
        Func<int, Override?> schedule = t => new Override().Set("lr", logLr.Select(0, t).Exp());
        cctx.Unroll(3, loss, schedule);
        Assert.Equal(3, cctx.StepCount);
        cctx.Unroll(Steps - 3, loss, schedule);
        F.MseLoss(cctx.FModel.Forward(d.Xq), d.Yq).Backward();
        var actual = model.Parameters().Select(p => p.Grad!.ToDoubleArray()).Append(logLr.Grad!.ToDoubleArray()).Append(weight.Grad!.ToDoubleArray()).ToArray();
        AssertClose(expected, actual, 1e-12, "schedule, captured leaf, two unroll calls");
    }

    /// <summary>copyInitialWeights true: the meta-gradient reaches the time-0 copies, inside a user's scope that releases the rest.</summary>
    [Fact]
    public void Checkpointed_CopiedInitialWeights_InsideAScope_EqualsKept()
    {
        var d = MakeData(Steps);
        var keptModel = Net(dropout: false, null);
        double[][] expected;
        using (var ctx = InnerLoop.Create(keptModel, Opt("adam", keptModel)))
        {
            var (fmodel, diffopt) = ctx;
            for (int t = 0; t < Steps; t++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]));
            }
            expected = Autograd.Grad([F.MseLoss(fmodel.Forward(d.Xq), d.Yq)], [.. fmodel.Parameters(0)]).Select(g => g!.ToDoubleArray()).ToArray();
        }
        var model = Net(dropout: false, null);
        double[][] actual;
        using (var scope = Tensor.NewScope("checkpointed test"))
        {
            using var ctx = CheckpointedInnerLoop.Create(model, Opt("adam", model), 3);
            ctx.Unroll(Steps, (fmodel, t) => F.MseLoss(fmodel.Forward(d.Xs[t]), d.Ys[t]));
            var q = F.MseLoss(ctx.FModel.Forward(d.Xq), d.Yq);
            actual = Autograd.Grad([q], [.. ctx.FModel.Parameters(0)]).Select(g => g!.ToDoubleArray()).ToArray();
        }
        AssertClose(expected, actual, 1e-12, "copied initial weights: meta-gradients");
        Assert.All(model.Parameters(), p => Assert.Null(p.Grad));
    }

    [Fact]
    public void Create_RefusesBadCheckpointEvery()
    {
        var model = Net(false, null);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointedInnerLoop.Create(model, Opt("sgd", model), 0));
        Assert.Contains("CheckpointedInnerLoop.Create", e.Message);
        Assert.Contains("checkpointEvery", e.Message);
    }

    [Fact]
    public void Create_RefusesAnOptimizerOfAnotherModel()
    {
        var model = Net(false, null);
        var other = Net(false, null);
        var e = Assert.Throws<ArgumentException>(() => CheckpointedInnerLoop.Create(model, Opt("sgd", other), 2));
        Assert.Contains("CheckpointedInnerLoop.Create", e.Message);
        Assert.Contains("none of the", e.Message);
    }

    [Fact]
    public void Unroll_RefusesBadInput_AndChangesNothing()
    {
        var d = MakeData(Steps);
        var model = Net(false, null);
        using var ctx = CheckpointedInnerLoop.Create(model, Opt("sgd", model), 2, copyInitialWeights: false);
        var before = ctx.FModel.FastParams;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ctx.Unroll(-1, (f, t) => F.MseLoss(f.Forward(d.Xs[t]), d.Ys[t])));
        Assert.Contains("CheckpointedInnerLoop.Unroll", e.Message);
        Assert.Throws<ArgumentNullException>(() => ctx.Unroll(3, null!));

        // A loss that is not a scalar, at step 3 (the second segment): nothing is committed.
        var bad = Assert.Throws<ArgumentException>(() => ctx.Unroll(5, (f, t) => t == 3 ? f.Forward(d.Xs[t]) : F.MseLoss(f.Forward(d.Xs[t]), d.Ys[t])));
        Assert.Contains("step 3", bad.Message);
        Assert.Contains("one element", bad.Message);
        Assert.Equal(0, ctx.StepCount);
        Assert.Same(before, ctx.FModel.FastParams);
        Assert.Equal(1, ctx.FModel.HistoryLength);

        ctx.Dispose();
        Assert.Throws<ObjectDisposedException>(() => ctx.Unroll(1, (f, t) => F.MseLoss(f.Forward(d.Xs[t]), d.Ys[t])));
    }

    [Fact]
    public void Backward_WithCreateGraph_SaysItIsNotSupported()
    {
        var d = MakeData(Steps);
        var model = Net(false, null);
        using var ctx = CheckpointedInnerLoop.Create(model, Opt("sgd", model), 2, copyInitialWeights: false);
        ctx.Unroll(3, (f, t) => F.MseLoss(f.Forward(d.Xs[t]), d.Ys[t]));
        var q = F.MseLoss(ctx.FModel.Forward(d.Xq), d.Yq);
        var e = Assert.Throws<NotSupportedException>(() => Autograd.Grad([q], [.. model.Parameters()], createGraph: true));
        Assert.Contains("createGraph", e.Message);
    }

    /// <summary>A step closure that draws a different number of random values when replayed is caught, not differentiated wrongly.</summary>
    [Fact]
    public void Recompute_OfANonDeterministicStep_Throws()
    {
        var d = MakeData(Steps);
        var model = Net(false, null);
        var sampler = new Generator(5);
        int calls = 0;
        using var ctx = CheckpointedInnerLoop.Create(model, Opt("sgd", model), 2, copyInitialWeights: false, generators: [sampler]);
        ctx.Unroll(2, (f, t) =>
        {
            // Draws one more value on every call: the replay draws more than the unroll did.
            sampler.Reserve(++calls);
            return F.MseLoss(f.Forward(d.Xs[t]), d.Ys[t]);
        });
        var q = F.MseLoss(ctx.FModel.Forward(d.Xq), d.Yq);
        var e = Assert.Throws<InvalidOperationException>(() => q.Backward());
        Assert.Contains("not a deterministic function", e.Message);
    }
}

/// <summary>Dropout drawing from <see cref="Generator.Default"/>: the rewind of the process-wide generator, alone (no other test draws from it meanwhile).</summary>
[Collection(nameof(CheckpointedDefaultGeneratorTests))]
public sealed class CheckpointedDefaultGeneratorTests
{
    [Theory]
    [InlineData("sgd")]
    [InlineData("adam")]
    [InlineData("rmsprop")]
    public void Checkpointed_WithDefaultGeneratorDropout_EqualsKept(string optimizer)
    {
        var options = new Dictionary<string, double> { ["lr"] = 0.05, ["momentum"] = optimizer == "sgd" ? 0.9 : 0 };
        if (optimizer != "sgd")
        {
            options.Remove("momentum");
        }
        var d = CheckpointedUnrollTests.MakeData(7);
        Generator.ManualSeed(1234);
        var keptModel = CheckpointedUnrollTests.Net(dropout: true, null);
        var kept = CheckpointedUnrollTests.Kept(keptModel, Optimizers.Create(optimizer, keptModel.Parameters(), options), d, 7, Tensor.Scalar(0.05, DType.Float64).WithRequiresGrad());
        Generator.ManualSeed(1234);
        var model = CheckpointedUnrollTests.Net(dropout: true, null);
        var checkpointed = CheckpointedUnrollTests.Checkpointed(model, Optimizers.Create(optimizer, model.Parameters(), options), d, 7, Tensor.Scalar(0.05, DType.Float64).WithRequiresGrad(), 3);
        CheckpointedUnrollTests.AssertClose(kept.Grads, checkpointed.Grads, 1e-12, $"{optimizer}, default-generator dropout: meta-gradients");
    }
}

/// <summary>Runs alone: it reseeds and rewinds the process-wide generator.</summary>
[CollectionDefinition(nameof(CheckpointedDefaultGeneratorTests), DisableParallelization = true)]
public sealed class CheckpointedDefaultGeneratorCollection;
