using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using static Higher.Conformance.Reliability.StateFingerprint;

namespace Higher.Conformance.Reliability;

/// <summary>
/// The same rules beyond the reported examples: hyperparameters written after construction, state
/// carried between optimizers, buffer syncs, overrides and layers with running statistics. Each twin
/// asserts the exception and a bit-identical state afterwards.
/// </summary>
public sealed class SweepFaultTests
{
    private static Sequential Mlp(ulong seed = 7) =>
        new(new Linear(2, 3, generator: new Generator(seed)), new Tanh(), new Linear(3, 1, generator: new Generator(seed + 1)));

    private static readonly Tensor X = Tensor.FromArray(new double[] { 0.5, -1, 1.5, 2, -0.25, 0.75 }, [3, 2]).To(DType.Float32).MoveTo(null); // shared by tests: owned by no inner-loop scope
    private static readonly Tensor Y = Tensor.FromArray(new double[] { 1, -1, 0.5 }, [3, 1]).To(DType.Float32).MoveTo(null); // shared by tests: owned by no inner-loop scope

    [Fact]
    public void BatchNormForward_ThatThrows_LeavesTheRunningStatisticsAndCount()
    {
        var bn = new BatchNorm1d(2);
        bn.Forward(Tensor.Randn([4, 2], generator: new Generator(2)));
        var before = Of(bn);
        Assert.Throws<ArgumentException>(() => bn.Forward(Tensor.Randn([4, 2], DType.Float64, new Generator(3))));
        Assert.Equal(before, Of(bn));
    }

    [Fact]
    public void OptimizerStep_WithANaNLearningRateWrittenLater_IsRefused()
    {
        var model = Mlp();
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        F.MseLoss(model.Forward(X), Y).Backward();
        opt.ParamGroups[0]["lr"] = double.NaN;
        var before = Of(opt) + Of(model);
        var e = Assert.Throws<ArgumentException>(opt.Step);
        Assert.Contains("Sgd.Step", e.Message, StringComparison.Ordinal);
        Assert.Contains("group 0", e.Message, StringComparison.Ordinal);
        Assert.Contains("lr", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(opt) + Of(model));
    }

    [Fact]
    public void DiffOptStep_WithANegativeLearningRateWrittenLater_IsRefused()
    {
        var model = Mlp();
        using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 }));
        ctx.DiffOpt.ParamGroups[0]["lr"] = -1;
        var before = Of(ctx.FModel) + Of(ctx.DiffOpt, 4);
        var e = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.Step(F.MseLoss(ctx.FModel.Forward(X), Y)));
        Assert.Contains("Step", e.Message, StringComparison.Ordinal);
        Assert.Contains("lr", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(ctx.FModel) + Of(ctx.DiffOpt, 4));
    }

    [Fact]
    public void ApplyTrainableOptParams_AnInvalidValue_WritesNoGroup()
    {
        var model = Mlp();
        var ps = model.Parameters().ToList();
        var opt = new Sgd([new ParamGroup(ps.Take(2)), new ParamGroup(ps.Skip(2))], new SgdOptions { Lr = 0.1, Momentum = 0.5 });
        var over = new Override().Set("lr", Tensor.Scalar(0.2), Tensor.Scalar(-0.3)).Set("momentum", 0.9);
        var before = Of(opt);
        var e = Assert.Throws<ArgumentException>(() => DiffOptim.ApplyTrainableOptParams(opt, over));
        Assert.Contains("ApplyTrainableOptParams", e.Message, StringComparison.Ordinal);
        Assert.Contains("group 1", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(opt));
    }

    [Fact]
    public void CopyStateTo_AParameterTheTargetDoesNotOptimize_WritesNothing()
    {
        var model = Mlp();
        using var ctx = InnerLoop.Create(model, new Adam(model.Parameters(), new AdamOptions { Lr = 0.1 }));
        ctx.DiffOpt.Step(F.MseLoss(ctx.FModel.Forward(X), Y));
        var target = new Adam(model.Parameters().Take(3), new AdamOptions { Lr = 0.1 });
        var before = Of(target);
        var e = Assert.Throws<ArgumentException>(() => ctx.DiffOpt.CopyStateTo(target, model.Parameters()));
        Assert.Contains("parameter 3", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(target));
    }

    [Fact]
    public void SyncBuffers_FromAnotherModule_IsRefused()
    {
        var model = new Sequential(new Linear(2, 2), new BatchNorm1d(2));
        var fmodel = Patch.Monkeypatch(model);
        var before = Of(fmodel);
        var e = Assert.Throws<ArgumentException>(() => fmodel.SyncBuffers(new BatchNorm1d(2)));
        Assert.Contains("SyncBuffers", e.Message, StringComparison.Ordinal);
        Assert.Contains("running_mean", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(fmodel));
    }

    [Fact]
    public void Override_NonFiniteNumber_IsRefused_AndTheOverrideKeepsItsEntries()
    {
        var over = new Override().Set("lr", 0.1);
        var e = Assert.Throws<ArgumentException>(() => over.Set("lr", double.NaN));
        Assert.Contains("lr", e.Message, StringComparison.Ordinal);
        Assert.Equal(0.1, over["lr"][0].Value);
        Assert.Throws<ArgumentException>(() => over.Set("momentum", 0.5, double.PositiveInfinity));
        Assert.False(over.Contains("momentum"));
    }

    [Fact]
    public void Lstm_InitialStateOfAnotherDType_NamesTheLayer()
    {
        var lstm = new Lstm(2, 3, generator: new Generator(1));
        var e = Assert.Throws<ArgumentException>(() => lstm.Forward(Tensor.Zeros([5, 4, 2]), Tensor.Zeros([1, 4, 3], DType.Float64), null));
        Assert.Contains("Lstm", e.Message, StringComparison.Ordinal);
        Assert.Contains("h0", e.Message, StringComparison.Ordinal);
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LstmCell_StateOfAnotherDType_NamesTheCell()
    {
        var cell = new LstmCell(2, 3, generator: new Generator(1));
        var e = Assert.Throws<ArgumentException>(() => cell.Forward(Tensor.Zeros([4, 2]), Tensor.Zeros([4, 3], DType.Float64), null));
        Assert.Contains("LstmCell", e.Message, StringComparison.Ordinal);
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Optimizer_TheSameTensorTwiceInAGroup_IsRefused()
    {
        var w = Tensor.Zeros([2]).WithRequiresGrad();
        var e = Assert.Throws<ArgumentException>(() => new Sgd([w, w]));
        Assert.Contains("parameter 1", e.Message, StringComparison.Ordinal);
        Assert.Contains("parameter 0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Optimizer_AnIntegerTensor_IsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => new Sgd([Tensor.Zeros([2], DType.Int64)]));
        Assert.Contains("int64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ClipGradNorm_NaNBound_IsRefused_AndTheGradientsAreKept()
    {
        var model = Mlp();
        F.MseLoss(model.Forward(X), Y).Backward();
        var before = Of(model);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => GradClipping.ClipGradNorm(model.Parameters(), double.NaN));
        Assert.Contains("maxNorm", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClipping.ClipGradValue(model.Parameters(), double.NaN));
        Assert.Equal(before, Of(model));
    }
}
