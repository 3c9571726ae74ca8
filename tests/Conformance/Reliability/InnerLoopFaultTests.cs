using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using static Higher.Conformance.Reliability.StateFingerprint;

namespace Higher.Conformance.Reliability;

/// <summary>
/// Failure twins of the inner-loop API: a call that throws names the user's call and operand, and
/// leaves the fast-weight history, the optimizer state, its overrides and step count bit-identical.
/// After the throw the context keeps working, and its next step equals a step of a context that
/// never saw the bad call.
/// </summary>
public sealed class InnerLoopFaultTests
{
    private static Sequential Mlp(ulong seed = 7) =>
        new(new Linear(2, 3, generator: new Generator(seed)), new Tanh(), new Linear(3, 1, generator: new Generator(seed + 1)));

    private static readonly Tensor X = Tensor.FromArray(new double[] { 0.5, -1, 1.5, 2, -0.25, 0.75 }, [3, 2]).To(DType.Float32).MoveTo(null); // shared by tests: owned by no inner-loop scope
    private static readonly Tensor Y = Tensor.FromArray(new double[] { 1, -1, 0.5 }, [3, 1]).To(DType.Float32).MoveTo(null); // shared by tests: owned by no inner-loop scope

    private static Tensor Loss(FunctionalModule f) => F.MseLoss(f.Forward(X), Y);

    private static InnerLoopContext Adam(Module model) =>
        InnerLoop.Create(model, new Adam(model.Parameters(), new AdamOptions { Lr = 0.1 }));

    private static string All(InnerLoopContext ctx) => Of(ctx.FModel) + Of(ctx.DiffOpt, ctx.FModel.FastParams.Count);

    /// <summary>Two steps on a twin context that never saw the failing call: what the context must still give.</summary>
    private static string CleanTwinAfterOneMoreStep(Func<InnerLoopContext, int> warmup)
    {
        using var twin = Adam(Mlp());
        warmup(twin);
        twin.DiffOpt.Step(Loss(twin.FModel));
        return string.Join(",", twin.FModel.FastParams.SelectMany(p => p.ToDoubleArray()).Select(BitConverter.DoubleToInt64Bits));
    }

    private static string Weights(InnerLoopContext ctx) =>
        string.Join(",", ctx.FModel.FastParams.SelectMany(p => p.ToDoubleArray()).Select(BitConverter.DoubleToInt64Bits));

    private static int OneStep(InnerLoopContext ctx)
    {
        ctx.DiffOpt.Step(Loss(ctx.FModel));
        return 0;
    }

    [Fact]
    public void Step_OverrideOfAFailingCall_DoesNotStayInForce()
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var before = All(ctx);
        var e = Assert.Throws<InvalidOperationException>(() => ctx.DiffOpt.Step(Loss(ctx.FModel),
            @override: new Override().Set("lr", 5.0),
            gradCallback: _ => throw new InvalidOperationException("callback refused")));
        Assert.Contains("callback refused", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
        OneStep(ctx);
        Assert.Equal(CleanTwinAfterOneMoreStep(OneStep), Weights(ctx));
    }

    [Fact]
    public void Step_WrongShapeParams_ThrowsNamingTheParameter_AndAdvancesNothing()
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var before = All(ctx);
        var loss = Loss(ctx.FModel);
        var bad = ctx.FModel.FastParams.ToArray();
        bad[2] = Tensor.Zeros([3, 1]).WithRequiresGrad();
        var e = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(loss, bad));
        Assert.Contains("Step", e.Message, StringComparison.Ordinal);
        Assert.Contains("2", e.Message, StringComparison.Ordinal);
        Assert.Contains("[3, 1]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[1, 3]", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
        OneStep(ctx);
        Assert.Equal(CleanTwinAfterOneMoreStep(OneStep), Weights(ctx));
    }

    [Fact]
    public void Step_WrongDTypeParams_ThrowsNamingTheDType_AndAdvancesNothing()
    {
        using var ctx = Adam(Mlp());
        var before = All(ctx);
        var bad = ctx.FModel.FastParams.Select(p => p.Detach().To(DType.Float64).WithRequiresGrad()).ToArray();
        var loss = F.MseLoss(ctx.FModel.Forward(X), Y);
        var e = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(loss, bad));
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
        Assert.Contains("float32", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
    }

    [Fact]
    public void Step_WrongShapeGradientFromCallback_ThrowsNamingIt_AndAdvancesNothing()
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var before = All(ctx);
        var e = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(Loss(ctx.FModel), gradCallback: grads =>
        {
            var g = grads.ToArray();
            g[1] = Tensor.Zeros([4]);
            return g;
        }));
        Assert.Contains("callback", e.Message, StringComparison.Ordinal);
        Assert.Contains("[4]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[3]", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
        OneStep(ctx);
        Assert.Equal(CleanTwinAfterOneMoreStep(OneStep), Weights(ctx));
    }

    [Fact]
    public void Step_WrongCountFromCallback_Throws_AndAdvancesNothing()
    {
        using var ctx = Adam(Mlp());
        var before = All(ctx);
        Assert.Throws<InvalidOperationException>(() => ctx.DiffOpt.Step(Loss(ctx.FModel), gradCallback: grads => grads.Take(2).ToArray()));
        Assert.Equal(before, All(ctx));
    }

    [Fact]
    public void Step_LossWithoutAGraph_IsRefused_NotASilentNoOp()
    {
        using var ctx = Adam(Mlp());
        var before = All(ctx);
        Tensor loss;
        using (Autograd.NoGrad())
        {
            loss = Loss(ctx.FModel);
        }
        var e = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(loss));
        Assert.Contains("Step", e.Message, StringComparison.Ordinal);
        Assert.Contains("NoGrad", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
    }

    [Fact]
    public void Step_InvalidOverrideName_Throws_AndAdvancesNothing()
    {
        using var ctx = Adam(Mlp());
        var before = All(ctx);
        Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(Loss(ctx.FModel), @override: new Override().Set("lrr", 0.5)));
        Assert.Equal(before, All(ctx));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(0)]
    public void MaxHistory_BelowOne_IsRefusedWhenSet(int max)
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var before = All(ctx);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ctx.FModel.MaxHistory = max);
        Assert.Contains("MaxHistory", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
    }

    [Fact]
    public void MaxHistory_One_KeepsTimeZeroAndTheLatestStep()
    {
        using var ctx = Adam(Mlp());
        using var twin = Adam(Mlp());
        ctx.FModel.MaxHistory = 1;
        for (int i = 0; i < 3; i++)
        {
            OneStep(ctx);
            OneStep(twin);
        }
        Assert.Equal(4, ctx.FModel.HistoryLength);
        Assert.Equal(Weights(twin), Weights(ctx));
        Assert.Throws<ArgumentOutOfRangeException>(() => ctx.FModel.Parameters(2));
        Assert.Same(ctx.FModel.FastParams, ctx.FModel.Parameters(3));
    }

    [Fact]
    public void InnerLoop_OptimizerOverAnotherModelsParameters_IsRefused()
    {
        var model = Mlp();
        var other = Mlp(11);
        var before = Of(model);
        var e = Assert.Throws<ArgumentException>(() => InnerLoop.Create(model, new Sgd(other.Parameters(), new SgdOptions { Lr = 0.1 })));
        Assert.Contains("InnerLoop.Create", e.Message, StringComparison.Ordinal);
        Assert.Contains("none of", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(model));
    }

    [Fact]
    public void InnerLoop_OptimizerBuiltBeforeTheModelMovedToFloat64_IsRefused()
    {
        var model = Mlp();
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        model.To(DType.Float64);
        var e = Assert.Throws<ArgumentException>(() => InnerLoop.Create(model, opt));
        Assert.Contains("To(", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InnerLoop_TruncateEveryBelowOne_IsRefused()
    {
        var model = Mlp();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => InnerLoop.Create(model, new Sgd(model.Parameters()), truncateEvery: 0));
        Assert.Contains("truncateEvery", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DisposedContext_RefusesForwardAndStep()
    {
        var ctx = Adam(Mlp());
        OneStep(ctx);
        var loss = Loss(ctx.FModel);
        ctx.Dispose();
        var before = All(ctx);
        var e1 = Assert.Throws<ObjectDisposedException>(() => ctx.FModel.Forward(X));
        Assert.Contains("FunctionalModule", e1.Message, StringComparison.Ordinal);
        var e2 = Assert.Throws<ObjectDisposedException>(() => ctx.DiffOpt.Step(loss));
        Assert.Contains("Step", e2.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
        ctx.Dispose();
    }

    [Fact]
    public void Forward_WrongDTypeParams_ThrowsAndTheyDoNotBecomeTheFastWeights()
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var before = All(ctx);
        var bad = ctx.FModel.FastParams.Select(p => p.Detach().To(DType.Float64)).ToArray();
        var e = Assert.Throws<ArgumentException>(() => ctx.FModel.Forward(X, bad));
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
        Assert.Contains("0.weight", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
        OneStep(ctx);
        Assert.Equal(CleanTwinAfterOneMoreStep(OneStep), Weights(ctx));
    }

    [Fact]
    public void Forward_ThatThrowsInsideTheModule_DoesNotKeepTheGivenParams()
    {
        using var ctx = Adam(Mlp());
        var before = All(ctx);
        var given = ctx.FModel.FastParams.Select(p => p.Detach().Clone().WithRequiresGrad()).ToArray();
        Assert.Throws<ArgumentException>(() => ctx.FModel.Forward(Tensor.Zeros([3, 5]), given));
        Assert.Equal(before, All(ctx));
    }

    [Fact]
    public void SetFastWeight_WrongShape_Throws_AndChangesNothing()
    {
        using var ctx = Adam(Mlp());
        var before = All(ctx);
        var e = Assert.Throws<ArgumentException>(() => ctx.FModel.SetFastWeight("2.bias", Tensor.Zeros([2])));
        Assert.Contains("2.bias", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, All(ctx));
    }

    [Fact]
    public void Call_TaskRunInside_SeesTheFastWeights()
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var expected = ctx.FModel.Forward(X).ToDoubleArray();
        var own = ctx.FModel.Module.Forward(X).ToDoubleArray();
        Assert.NotEqual(own, expected);
        int caller = Environment.CurrentManagedThreadId;
        var (viaTask, worker) = ctx.FModel.Call(m =>
        {
            // The task is seen running before the call waits for it, so it cannot be inlined on this thread.
            using var running = new ManualResetEventSlim();
            var task = Task.Run(() =>
            {
                running.Set();
                return (m.Forward(X), Environment.CurrentManagedThreadId);
            });
            running.Wait();
            return task.Result;
        });
        Assert.NotEqual(caller, worker);
        Assert.Equal(expected, viaTask.ToDoubleArray());
    }

    [Fact]
    public async Task Call_AwaitInside_SeesTheFastWeightsAfterTheAwait()
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var expected = ctx.FModel.Forward(X).ToDoubleArray();
        var y = await ctx.FModel.Call(async m =>
        {
            await Task.Yield();
            var first = m.Forward(X);
            await Task.Delay(1);
            return (first, second: m.Forward(X));
        });
        Assert.Equal(expected, y.first.ToDoubleArray());
        Assert.Equal(expected, y.second.ToDoubleArray());
        // Outside the call the module runs on its own weights again.
        Assert.NotEqual(expected, ctx.FModel.Module.Forward(X).ToDoubleArray());
    }

    [Fact]
    public void Call_ParallelTasksInside_AllSeeTheFastWeights_AndGradientsReachThem()
    {
        using var ctx = Adam(Mlp());
        OneStep(ctx);
        var expected = ctx.FModel.Forward(X).ToDoubleArray();
        var outputs = ctx.FModel.Call(m => Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => m.Forward(X)))).Result);
        foreach (var o in outputs)
        {
            Assert.Equal(expected, o.ToDoubleArray());
        }
        var g = Autograd.Grad([outputs[0].Sum()], [ctx.FModel.FastParams[0]]);
        Assert.NotNull(g[0]);
    }
}
