using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Batching;

/// <summary>Bad input to a task-batched inner loop: a clear message naming the call, the shapes and the task count, and nothing changed.</summary>
public sealed class BatchedInnerLoopErrorTests
{
    private static (Module Model, Optimizer Opt) Mlp()
    {
        var model = BatchedInnerLoopTests.Mlp(1);
        return (model, new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 }));
    }

    [Fact]
    public void CreateBatched_RefusesTaskCountBelowOne()
    {
        var (model, opt) = Mlp();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => InnerLoop.CreateBatched(model, opt, 0));
        Assert.Contains("tasks must be at least 1", e.Message, StringComparison.Ordinal);
    }

    private sealed class NotBatchable : Module
    {
        public NotBatchable() => RegisterModule("inner", new Linear(1, 1));

        public override string? TaskBatchingLimitation => "its forward inverts a matrix per call";

        public override Tensor Forward(Tensor input) => input;
    }

    [Fact]
    public void CreateBatched_RefusesALayerThatCannotBeBatched_NamingItAndWhy()
    {
        var model = new Sequential(new Linear(1, 1), new NotBatchable());
        var opt = new Sgd(model.Parameters());
        var e = Assert.Throws<ArgumentException>(() => InnerLoop.CreateBatched(model, opt, 3));
        Assert.Contains("layer '1' (NotBatchable)", e.Message, StringComparison.Ordinal);
        Assert.Contains("its forward inverts a matrix per call", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Forward_WithTheWrongTaskDimension_NamesTheLayer_AndLeavesTheHistory()
    {
        var (model, opt) = Mlp();
        using var ctx = InnerLoop.CreateBatched(model, opt, 4);
        var bad = Tensor.Zeros(new Shape(5, 3, 1), DType.Float64);
        int before = ctx.FModel.HistoryLength;
        var e = Assert.Throws<ArgumentException>(() => ctx.FModel.Forward(bad));
        Assert.Contains("Linear(1, 8), task-batched over 4 tasks", e.Message, StringComparison.Ordinal);
        Assert.Contains("[5, 3, 1]", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, ctx.FModel.HistoryLength);
        // The same input without a task dimension is refused too: [3, 1] has 3 where T = 4 belongs.
        Assert.Throws<ArgumentException>(() => ctx.FModel.Forward(Tensor.Zeros(new Shape(3, 1), DType.Float64)));
    }

    [Fact]
    public void Step_WithALossOfTheWrongShape_ChangesNothing()
    {
        var (model, opt) = Mlp();
        using var ctx = InnerLoop.CreateBatched(model, opt, 4);
        var (fmodel, diffopt) = ctx;
        var x = Tensor.Zeros(new Shape(4, 3, 1), DType.Float64);
        var perSample = (fmodel.Forward(x) - 1).Square().Reshape(4, 3);
        var weights = fmodel.FastParams;
        var e = Assert.Throws<ArgumentException>(() => diffopt.Step(perSample));
        Assert.Contains("task-batched step over 4 tasks", e.Message, StringComparison.Ordinal);
        Assert.Contains("[4, 3]", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, diffopt.StepCount);
        Assert.Same(weights, fmodel.FastParams);
    }

    [Fact]
    public void UpdateParams_WithoutTheTaskDimension_NamesTheExpectedShape()
    {
        var (model, opt) = Mlp();
        using var ctx = InnerLoop.CreateBatched(model, opt, 4);
        var plain = model.Parameters().Select(p => p.Detach()).ToList();
        var e = Assert.Throws<ArgumentException>(() => ctx.FModel.UpdateParams(plain));
        Assert.Contains("task-batched view over 4 tasks needs [4, 8, 1]", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, ctx.FModel.HistoryLength);
        // And a step given the plain weights names the batched shape it was built for.
        var s = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(Tensor.Scalar(0, DType.Float64), plain));
        Assert.Contains("[4, 8, 1]", s.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PerTaskOverride_WithTheWrongCount_OrOnAPlainContext_IsRefused()
    {
        var (model, opt) = Mlp();
        var lr = Tensor.FromArray(new[] { 0.1, 0.2, 0.3 });
        var e = Assert.Throws<ArgumentException>(() => InnerLoop.CreateBatched(model, opt, 4, @override: new Override().SetPerTask("lr", lr)));
        Assert.Contains("has 3 per-task values, but the inner loop batches 4 tasks", e.Message, StringComparison.Ordinal);
        var plain = Assert.Throws<ArgumentException>(() => InnerLoop.Create(model, opt, @override: new Override().SetPerTask("lr", lr)));
        Assert.Contains("only a task-batched inner loop", plain.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new Override().SetPerTask("lr", Tensor.Zeros(new Shape(3, 2), DType.Float64)));

        using var ctx = InnerLoop.CreateBatched(model, opt, 3);
        var x = Tensor.Zeros(new Shape(3, 2, 1), DType.Float64);
        var loss = TaskLosses.Mse(ctx.FModel.Forward(x), x);
        var step = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(loss, @override: new Override().SetPerTask("lr", Tensor.FromArray(new[] { 0.1, 0.2 }))));
        Assert.Contains("has 2 per-task values", step.Message, StringComparison.Ordinal);
        Assert.Equal(0, ctx.DiffOpt.StepCount);
        Assert.False(ctx.DiffOpt.Override.Contains("lr"));
    }

    [Fact]
    public void PerTaskValue_OfAHyperparameterTheRuleBranchesOn_NamesTheRule_AndChangesNothing()
    {
        var model = BatchedInnerLoopTests.Mlp(1);
        var opt = new RAdam(model.Parameters(), new RAdamOptions { Lr = 0.01 });
        using var ctx = InnerLoop.CreateBatched(model, opt, 2, @override: new Override().SetPerTask("beta2", Tensor.FromArray(new[] { 0.99, 0.999 })));
        var x = Tensor.Ones(new Shape(2, 3, 1), DType.Float64);
        var loss = TaskLosses.Mse(ctx.FModel.Forward(x), x);
        var weights = ctx.FModel.FastParams;
        var e = Assert.Throws<InvalidOperationException>(() => ctx.DiffOpt.Step(loss));
        Assert.Contains("RAdam's update rule failed on the task-batched parameter", e.Message, StringComparison.Ordinal);
        Assert.Contains("per-task values", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, ctx.DiffOpt.StepCount);
        Assert.Same(weights, ctx.FModel.FastParams);
        Assert.Null(ctx.DiffOpt.StateOf(0));
    }

    [Fact]
    public void BatchNorm_WithTheWrongInput_LeavesItsBuffers()
    {
        var model = BatchedInnerLoopTests.ConvNet(1, 3);
        var opt = new Sgd(model.Parameters());
        using var ctx = InnerLoop.CreateBatched(model, opt, 2);
        var before = ctx.FModel.Buffers().Select(b => b.Value!.ToDoubleArray()).ToList();
        var bn = (BatchNorm2d)((Sequential)model)[1];
        // Channels 4 expected at axis 2 after [T, N]; this has 3.
        var e = Assert.Throws<ArgumentException>(() => ctx.FModel.Call(_ => bn.Forward(Tensor.Zeros(new Shape(2, 5, 3, 6, 6), DType.Float64))));
        Assert.Contains("BatchNorm2d(4), task-batched over 2 tasks, expects input [T=2, N, 4, H, W]", e.Message, StringComparison.Ordinal);
        var after = ctx.FModel.Buffers().Select(b => b.Value!.ToDoubleArray()).ToList();
        Assert.Equal(before, after);
    }

    [Fact]
    public void CopyStateTo_APlainOptimizer_IsRefused()
    {
        var (model, opt) = Mlp();
        using var ctx = InnerLoop.CreateBatched(model, opt, 2);
        var e = Assert.Throws<InvalidOperationException>(() => ctx.DiffOpt.CopyStateTo(opt, model.Parameters()));
        Assert.Contains("task-batched (2 tasks", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TaskLosses_RefuseMismatchedShapes()
    {
        var e = Assert.Throws<ArgumentException>(() => TaskLosses.Mse(Tensor.Zeros(new Shape(2, 3), DType.Float64), Tensor.Zeros(new Shape(3, 2), DType.Float64)));
        Assert.Contains("TaskLosses.Mse", e.Message, StringComparison.Ordinal);
        var c = Assert.Throws<ArgumentException>(() => TaskLosses.CrossEntropy(Tensor.Zeros(new Shape(2, 3), DType.Float64), Tensor.Zeros(new Shape(2), DType.Int64)));
        Assert.Contains("[T, B, C]", c.Message, StringComparison.Ordinal);
    }
}
