using Higher.Nn;
using Higher.Optim;
using Higher.Optim.Schedulers;
using static Higher.Conformance.Reliability.StateFingerprint;

namespace Higher.Conformance.Reliability;

/// <summary>
/// Failure twins of the plain path (tensors, modules, optimizers, schedulers): the throw names the
/// call, the operand and its shape or dtype, and every tensor, gradient, optimizer state and
/// hyperparameter is bit-identical afterwards.
/// </summary>
public sealed class PlainPathFaultTests
{
    private static Sequential Mlp(ulong seed = 7) =>
        new(new Linear(2, 3, generator: new Generator(seed)), new Tanh(), new Linear(3, 1, generator: new Generator(seed + 1)));

    private static readonly Tensor X = Tensor.FromArray(new double[] { 0.5, -1, 1.5, 2, -0.25, 0.75 }, [3, 2]).To(DType.Float32).MoveTo(null); // shared by tests: owned by no inner-loop scope
    private static readonly Tensor Y = Tensor.FromArray(new double[] { 1, -1, 0.5 }, [3, 1]).To(DType.Float32).MoveTo(null); // shared by tests: owned by no inner-loop scope

    // ------------------------------------------------------------------ shapes

    [Fact]
    public void Shape_WhoseElementCountOverflows_IsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => new Shape(65536, 65536, 65536, 65536));
        Assert.Contains("[65536, 65536, 65536, 65536]", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Tensor.Zeros([65536, 65536, 65536, 65536]));
        Assert.Throws<ArgumentException>(() => Tensor.Ones([int.MaxValue, int.MaxValue, int.MaxValue]));
    }

    [Fact]
    public void Shape_WithAZeroDimension_StillHasZeroElements()
    {
        Assert.Equal(0, new Shape(0, int.MaxValue, int.MaxValue, int.MaxValue).Numel);
        Assert.Equal((long)int.MaxValue * int.MaxValue, new Shape(int.MaxValue, int.MaxValue).Numel);
    }

    [Fact]
    public void Reshape_ToAnOverflowingShape_IsRefused()
    {
        var empty = Tensor.Zeros([0]);
        var e = Assert.Throws<ArgumentException>(() => empty.Reshape(65536, 65536, 65536, 65536));
        Assert.Contains("65536", e.Message, StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ gradients

    [Fact]
    public void GradSetter_WrongShape_IsRefused_AndTheGradIsKept()
    {
        var p = Tensor.Zeros([2, 3]).WithRequiresGrad();
        var g = Tensor.Ones([2, 3]);
        p.Grad = g;
        var e = Assert.Throws<ArgumentException>(() => p.Grad = Tensor.Ones([3]));
        Assert.Contains("[2, 3]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[3]", e.Message, StringComparison.Ordinal);
        Assert.Same(g, p.Grad);
        Assert.Throws<ArgumentException>(() => p.Grad = Tensor.Ones([2, 3], DType.Float64));
        Assert.Same(g, p.Grad);
    }

    // ------------------------------------------------------------------ optimizers

    /// <summary>SGD whose rule fails on the parameter at <see cref="FailAt"/> (a fault in the middle of a parameter list).</summary>
    private sealed class FaultySgd(IEnumerable<Tensor> parameters) : Optimizer(OneGroup(parameters), new Dictionary<string, double> { ["lr"] = 0.1, ["momentum"] = 0.9 })
    {
        public int FailAt { get; set; } = -1;

        private int _seen;

        public override Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper)
        {
            ArgumentNullException.ThrowIfNull(state);
            ArgumentNullException.ThrowIfNull(hyper);
            if (_seen++ == FailAt)
            {
                throw new ArgumentException("this rule refuses the parameter");
            }
            state.Step++;
            var buf = state.Has("momentum_buffer") ? hyper["momentum"] * state["momentum_buffer"] + grad : grad;
            state["momentum_buffer"] = buf;
            return param - hyper["lr"] * buf;
        }

        public override void Step()
        {
            _seen = 0;
            base.Step();
        }
    }

    private static void Backward(Module m) => F.MseLoss(m.Forward(X), Y).Backward();

    [Fact]
    public void OptimizerStep_FailingAtTheThirdParameter_UpdatesNone_AndNamesIt()
    {
        var model = Mlp();
        var opt = new FaultySgd(model.Parameters());
        Backward(model);
        opt.Step();
        opt.ZeroGrad();
        Backward(model);
        var before = Of(opt) + Of(model);
        opt.FailAt = 2;
        var e = Assert.Throws<ArgumentException>(opt.Step);
        Assert.Contains("parameter 2", e.Message, StringComparison.Ordinal);
        Assert.Contains("[1, 3]", e.Message, StringComparison.Ordinal);
        Assert.Contains("this rule refuses the parameter", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(opt) + Of(model));

        // Retrying after the fix steps every parameter exactly once: as a twin that never failed.
        opt.FailAt = -1;
        opt.Step();
        var twin = Mlp();
        var twinOpt = new FaultySgd(twin.Parameters());
        Backward(twin);
        twinOpt.Step();
        twinOpt.ZeroGrad();
        Backward(twin);
        twinOpt.Step();
        Assert.Equal(string.Join(",", twin.Parameters().SelectMany(p => p.ToDoubleArray())), string.Join(",", model.Parameters().SelectMany(p => p.ToDoubleArray())));
    }

    /// <summary>torch's optimizer.step() with no gradient anywhere changes nothing (schedulers rely on it): kept, and nothing moves.</summary>
    [Fact]
    public void OptimizerStep_WithNoGradientAnywhere_ChangesNothing()
    {
        var model = Mlp();
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1, Momentum = 0.9 });
        var before = Of(opt) + Of(model);
        opt.Step();
        Assert.Equal(before, Of(opt) + Of(model));
    }

    [Fact]
    public void OptimizerStep_OverAParameterReplacedByHand_IsRefused()
    {
        var model = new Linear(2, 3, generator: new Generator(1));
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        model.Weight.Data = Tensor.Zeros([3, 2]);
        F.MseLoss(model.Forward(X), Tensor.Zeros([3, 3])).Backward();
        var before = Of(opt) + Of(model);
        var e = Assert.Throws<InvalidOperationException>(opt.Step);
        Assert.Contains("Sgd.Step", e.Message, StringComparison.Ordinal);
        Assert.Contains("parameter 0", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(opt) + Of(model));
    }

    [Fact]
    public void OptimizerStep_AfterTheModelWasMovedToFloat64_IsRefused()
    {
        var model = Mlp();
        var opt = new Adam(model.Parameters(), new AdamOptions { Lr = 0.1 });
        model.To(DType.Float64);
        F.MseLoss(model.Forward(X.To(DType.Float64)), Y.To(DType.Float64)).Backward();
        var before = Of(opt) + Of(model);
        var e = Assert.Throws<InvalidOperationException>(opt.Step);
        Assert.Contains("Adam.Step", e.Message, StringComparison.Ordinal);
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
        Assert.Contains("To(", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(opt) + Of(model));
    }

    [Fact]
    public void OptimizerLoadStateDict_StateOfTheWrongShape_IsRefused()
    {
        var model = Mlp();
        var opt = new Adam(model.Parameters(), new AdamOptions { Lr = 0.1 });
        Backward(model);
        opt.Step();
        var dict = opt.StateDict();
        var state = dict.State.ToDictionary(kv => kv.Key, kv => kv.Value);
        var broken = state[1].DetachedCopy();
        broken.Tensors["exp_avg"] = Tensor.Zeros([5]);
        state[1] = broken;
        var before = Of(opt);
        var e = Assert.Throws<ArgumentException>(() => opt.LoadStateDict(new OptimizerStateDict(dict.Groups, state)));
        Assert.Contains("exp_avg", e.Message, StringComparison.Ordinal);
        Assert.Contains("[5]", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(opt));
    }

    [Fact]
    public void AddParamGroup_Invalid_LeavesTheOptimizerAndTheGroupUnchanged()
    {
        var model = Mlp();
        var extra = Tensor.Zeros([2]).WithRequiresGrad();
        var opt = new Sgd(model.Parameters().Take(2), new SgdOptions { Lr = 0.1 });
        var before = Of(opt);
        var group = new ParamGroup([extra], new Dictionary<string, double> { ["lr"] = -1 });
        Assert.Throws<ArgumentException>(() => opt.AddParamGroup(group));
        Assert.Equal(before, Of(opt));
        Assert.Equal(["lr"], group.Options.Keys.ToArray());
    }

    // ------------------------------------------------------------------ schedulers

    [Fact]
    public void SchedulerStep_WhoseLambdaThrows_AdvancesNothing()
    {
        var model = Mlp();
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        var sched = new LambdaLR(opt, epoch => epoch == 2 ? throw new InvalidOperationException("lambda failed") : 1.0 / (epoch + 1));
        sched.Step();
        var before = Of(opt) + sched.LastEpoch + string.Join(",", sched.GetLastLr());
        Assert.Throws<InvalidOperationException>(sched.Step);
        Assert.Equal(before, Of(opt) + sched.LastEpoch + string.Join(",", sched.GetLastLr()));
    }

    [Fact]
    public void SchedulerStep_ThatWouldWriteANonFiniteLr_IsRefused()
    {
        var model = Mlp();
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        var sched = new LambdaLR(opt, epoch => epoch == 1 ? double.NaN : 1.0);
        var before = Of(opt) + sched.LastEpoch;
        var e = Assert.Throws<InvalidOperationException>(sched.Step);
        Assert.Contains("LambdaLR", e.Message, StringComparison.Ordinal);
        Assert.Contains("NaN", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(opt) + sched.LastEpoch);
    }

    [Fact]
    public void SchedulerResume_WithAGroupLackingInitialLr_ChangesNoGroup()
    {
        var model = Mlp();
        var ps = model.Parameters().ToList();
        var opt = new Sgd([new ParamGroup(ps.Take(2)), new ParamGroup(ps.Skip(2))], new SgdOptions { Lr = 0.1 });
        opt.ParamGroups[0]["initial_lr"] = 0.1;
        var before = Of(opt);
        Assert.Throws<ArgumentException>(() => new StepLR(opt, 2, lastEpoch: 3));
        Assert.Equal(before, Of(opt));
    }

    // ------------------------------------------------------------------ modules

    [Fact]
    public void ModuleTo_AnUnavailableDevice_LeavesTheModuleOnItsDevice()
    {
        var model = Mlp();
        var before = Of(model);
        Assert.ThrowsAny<Exception>(() => model.To(Device.Cuda(7)));
        Assert.Equal(before, Of(model));
    }

    [Fact]
    public void LoadStateDict_WrongDType_IsRefusedNamingTheKey_AndChangesNothing()
    {
        var model = Mlp();
        var state = model.StateDict();
        state["2.bias"] = Tensor.Zeros([1], DType.Int64);
        state["0.weight"] = Tensor.Zeros([3, 2]);
        var before = Of(model);
        var e = Assert.Throws<ArgumentException>(() => model.LoadStateDict(state));
        Assert.Contains("2.bias", e.Message, StringComparison.Ordinal);
        Assert.Contains("int64", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Of(model));
    }

    // ------------------------------------------------------------------ messages that name the caller

    [Fact]
    public void Linear_BiasOfAnotherDType_NamesLinear()
    {
        var w = Tensor.Zeros([3, 2]);
        var b = Tensor.Zeros([3], DType.Float64);
        var e = Assert.Throws<ArgumentException>(() => Tensor.Linear(X, w, b));
        Assert.Contains("Linear", e.Message, StringComparison.Ordinal);
        Assert.Contains("bias", e.Message, StringComparison.Ordinal);
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
        Assert.Contains("float32", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LinearModule_InputOfTheWrongWidth_NamesLinearAndTheShapes()
    {
        var layer = new Linear(2, 3);
        var e = Assert.Throws<ArgumentException>(() => layer.Forward(Tensor.Zeros([4, 5])));
        Assert.Contains("Linear", e.Message, StringComparison.Ordinal);
        Assert.Contains("[4, 5]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[3, 2]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Embedding_IndexOutOfRange_NamesEmbeddingTheIndexAndTheTableSize()
    {
        var emb = new Embedding(5, 2, generator: new Generator(1));
        var e = Assert.ThrowsAny<ArgumentException>(() => emb.Forward(Tensor.FromArray(new long[] { 1, 7, 2 }, [3])));
        Assert.Contains("Embedding", e.Message, StringComparison.Ordinal);
        Assert.Contains("7", e.Message, StringComparison.Ordinal);
        Assert.Contains("5", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("IndexSelect", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Softmax_OfInt64_NamesSoftmax()
    {
        var x = Tensor.FromArray(new long[] { 1, 2, 3 }, [3]);
        var e = Assert.Throws<ArgumentException>(() => x.Softmax(0));
        Assert.Contains("Softmax", e.Message, StringComparison.Ordinal);
        Assert.Contains("int64", e.Message, StringComparison.Ordinal);
        var e2 = Assert.Throws<ArgumentException>(() => x.LogSoftmax(0));
        Assert.Contains("LogSoftmax", e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Lstm_OnAZeroLengthSequence_NamesTheLayer()
    {
        var lstm = new Lstm(2, 3, generator: new Generator(1));
        var e = Assert.Throws<ArgumentException>(() => lstm.Forward(Tensor.Zeros([0, 4, 2])));
        Assert.Contains("Lstm", e.Message, StringComparison.Ordinal);
        Assert.Contains("[0, 4, 2]", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Stack", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MseLoss_DTypeMismatch_NamesTheLoss()
    {
        var e = Assert.Throws<ArgumentException>(() => F.MseLoss(X, Tensor.Zeros([3, 2], DType.Float64)));
        Assert.Contains("MseLoss", e.Message, StringComparison.Ordinal);
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CrossEntropy_IntegerLogits_NamesTheLoss()
    {
        var e = Assert.Throws<ArgumentException>(() => F.CrossEntropy(Tensor.Zeros([2, 3], DType.Int64), Tensor.FromArray(new long[] { 0, 1 }, [2])));
        Assert.Contains("CrossEntropy", e.Message, StringComparison.Ordinal);
        Assert.Contains("int64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BinaryCrossEntropyWithLogits_DTypeMismatch_NamesTheLoss()
    {
        var e = Assert.Throws<ArgumentException>(() => F.BinaryCrossEntropyWithLogits(Tensor.Zeros([2]), Tensor.Zeros([2], DType.Float64)));
        Assert.Contains("BinaryCrossEntropyWithLogits", e.Message, StringComparison.Ordinal);
    }
}
