namespace Higher.Conformance.Engine;

/// <summary>
/// Single ops against PyTorch: forward values, the VJP for a fixed upstream gradient, and the
/// second-order term d/d(inputs) Σ_i ⟨VJP_i, v_i⟩ (so every backward is checked to be
/// differentiable and right). Cases and parameters come from engine.json; this class only maps
/// each case name to Higher's API.
/// </summary>
public abstract class OpFixtureTests : EngineTestBase
{
    private delegate Tensor[] OpBody(OpCase c, IReadOnlyDictionary<string, Tensor> t);

    private static readonly Dictionary<string, OpBody> Ops = new()
    {
        ["softmax"] = (c, t) => [t["x"].Softmax(c.Int("dim"))],
        ["log_softmax"] = (c, t) => [t["x"].LogSoftmax(c.Int("dim"))],
        ["logsumexp"] = LogSumExp,
        ["logsumexp_multi"] = LogSumExp,
        ["cross_entropy_smooth_ignore_mean"] = CrossEntropy,
        ["cross_entropy_smooth_ignore_none"] = CrossEntropy,
        ["cross_entropy_smooth_ignore_sum"] = CrossEntropy,
        ["cross_entropy_plain"] = CrossEntropy,
        ["nll_loss_ignore"] = (c, t) => [F.NllLoss(t["x"], t["target"], ReductionOf(c), c.Long("ignore_index", -100))],
        ["nll_loss_sum"] = (c, t) => [F.NllLoss(t["x"], t["target"], ReductionOf(c), c.Long("ignore_index", -100))],
        ["bce_with_logits"] = (c, t) => [F.BinaryCrossEntropyWithLogits(t["x"], t["target"], ReductionOf(c))],
        ["gelu"] = (c, t) => [t["x"].Gelu(tanhApproximation: false)],
        ["gelu_tanh"] = (c, t) => [t["x"].Gelu(tanhApproximation: true)],
        // torch's default threshold (20) is far above these inputs: this is the softplus primitive.
        ["softplus"] = (c, t) => [t["x"].Softplus()],
        ["softplus_beta_threshold"] = (c, t) => [t["x"].Softplus(c.Double("beta"), c.Double("threshold"))],
        ["var_axis"] = (c, t) => [t["x"].Var(c.Ints("dims"))],
        ["var_all"] = (c, t) => [t["x"].Var()],
        ["std_axis"] = (c, t) => [t["x"].Std(c.Ints("dims"))],
        ["matmul_broadcast_batch"] = MatMul,
        ["matmul_batch_matrix"] = MatMul,
        ["matmul_vector_batch"] = MatMul,
        ["matmul_matrix_vector"] = MatMul,
        ["matmul_dot"] = MatMul,
        ["linear"] = (c, t) => [Tensor.Linear(t["x"], t["w"], t["b"])],
        ["gather"] = Gather,
        ["gather_dim0"] = Gather,
        ["scatter_add"] = (c, t) => [t["self"].ScatterAdd(c.Int("dim"), t["index"], t["src"])],
        ["index_select"] = IndexSelect,
        ["index_select_dim1"] = IndexSelect,
        ["max_dim"] = (c, t) =>
        {
            var (values, indices) = t["x"].Max(c.Int("dim"), c.Bool("keepdim"));
            return [values, indices];
        },
        ["min_dim_keepdim"] = (c, t) =>
        {
            var (values, indices) = t["x"].Min(c.Int("dim"), c.Bool("keepdim"));
            return [values, indices];
        },
        ["amax_ties"] = (c, t) => [t["x"].Amax(c.Ints("dims"), c.Bool("keepdim"))],
        ["amax_all_ties"] = (c, t) => [t["x"].Amax()],
        ["amin_ties"] = (c, t) => [t["x"].Amin(c.Ints("dims"), c.Bool("keepdim"))],
        ["maximum_ties"] = (c, t) => [Tensor.Maximum(t["a"], t["b"])],
        ["maximum_broadcast"] = (c, t) => [Tensor.Maximum(t["a"], t["b"])],
        ["minimum_ties"] = (c, t) => [Tensor.Minimum(t["a"], t["b"])],
        ["clamp_bounds"] = (c, t) => [t["x"].Clamp(c.Double("min"), c.Double("max"))],
        ["pow_tensor"] = (c, t) => [Tensor.Pow(t["a"], t["b"])],
        ["pow_tensor_zero_base"] = (c, t) => [Tensor.Pow(t["a"], t["b"])],
        ["pow_scalar"] = (c, t) => [t["x"].Pow(c.Double("exponent"))],
        ["where"] = (c, t) => [Tensor.Where(t["cond"], t["a"], t["b"])],
        ["expand"] = (c, t) => [t["x"].Expand(c.Ints("shape"))],
        ["sum_axes"] = (c, t) => [t["x"].Sum(c.Ints("dims"), c.Bool("keepdim"))],
        ["expand_sum"] = (c, t) => [(t["x"].Expand(c.Ints("shape")) * t["w"]).Sum(c.Ints("dims"))],
        ["mean_axes"] = (c, t) => [t["x"].Mean(c.Ints("dims"), c.Bool("keepdim"))],
        ["sigmoid"] = (c, t) => [t["x"].Sigmoid()],
        ["tanh"] = (c, t) => [t["x"].Tanh()],
        ["exp_log"] = (c, t) => [t["x"].Log() + t["x"].Exp()],
        ["sqrt"] = (c, t) => [t["x"].Sqrt()],
        ["erf"] = (c, t) => [t["x"].Erf()],
        ["abs"] = (c, t) => [t["x"].Abs()],
        ["leaky_relu"] = (c, t) => [t["x"].LeakyRelu(c.Double("negative_slope"))],
        ["relu"] = (c, t) => [t["x"].Relu()],
        ["div_broadcast"] = (c, t) => [t["a"] / t["b"]],
        ["mul_sub_broadcast"] = (c, t) => [t["a"] * t["b"] - t["b"]],
        ["permute"] = (c, t) => [t["x"].Permute(c.Ints("perm"))],
        ["slice_step"] = (c, t) => [t["x"].Slice(c.Int("axis"), c.Int("start"), c.Int("end"), c.Int("step"))],
        ["cat"] = (c, t) => [Tensor.Cat([t["a"], t["b"]], c.Int("dim"))],
        ["stack"] = (c, t) => [Tensor.Stack([t["a"], t["b"]], c.Int("dim"))],
        ["mse_loss"] = (c, t) => [F.MseLoss(t["x"], t["y"], ReductionOf(c))],
    };

    private static Tensor[] LogSumExp(OpCase c, IReadOnlyDictionary<string, Tensor> t) => [t["x"].LogSumExp(c.Ints("dims"), c.Bool("keepdim"))];

    private static Tensor[] CrossEntropy(OpCase c, IReadOnlyDictionary<string, Tensor> t) =>
        [F.CrossEntropy(t["logits"], t["target"], ReductionOf(c), c.Double("label_smoothing", 0), c.Long("ignore_index", -100))];

    private static Tensor[] MatMul(OpCase c, IReadOnlyDictionary<string, Tensor> t) => [Tensor.MatMul(t["a"], t["b"])];

    private static Tensor[] Gather(OpCase c, IReadOnlyDictionary<string, Tensor> t) => [t["x"].Gather(c.Int("dim"), t["index"])];

    private static Tensor[] IndexSelect(OpCase c, IReadOnlyDictionary<string, Tensor> t) => [t["x"].IndexSelect(c.Int("dim"), t["index"])];

    private static Reduction ReductionOf(OpCase c) => c.String("reduction", "mean") switch
    {
        "none" => Reduction.None,
        "sum" => Reduction.Sum,
        _ => Reduction.Mean,
    };

    /// <summary>Uploads the inputs; those in the case's diff list require grad.</summary>
    private (Dictionary<string, Tensor> All, Tensor[] Diff) Inputs(OpCase c)
    {
        var all = new Dictionary<string, Tensor>();
        foreach (var (name, array) in c.Inputs)
        {
            all[name] = Load(array);
        }
        var diff = c.Diff.Select(n => all[n].WithRequiresGrad()).ToArray();
        return (all, diff);
    }

    [Fact]
    public void EveryFixtureCaseHasAnImplementation()
    {
        // Device-independent, but a binding that cannot run must not report it passed.
        RequireDevice();
        var names = EngineFixture.OpNames.ToHashSet();
        Assert.Empty(names.Except(Ops.Keys));
        Assert.Empty(Ops.Keys.Except(names));
        Assert.False(string.IsNullOrEmpty(EngineFixture.TorchVersion));
    }

    [Theory]
    [MemberData(nameof(EngineFixture.OpCaseNames), MemberType = typeof(EngineFixture))]
    public void Forward(string name)
    {
        RequireDevice();
        var c = EngineFixture.Op(name);
        var (all, _) = Inputs(c);
        var outputs = Ops[name](c, all);
        AssertClose(c.Output, outputs[0], $"{name} output");
        if (c.Indices is { } indices)
        {
            Assert.Equal(DType.Int64, outputs[1].DType);
            Assert.Equal(indices.Shape, outputs[1].Shape.ToArray());
            Assert.Equal(indices.Integers!, outputs[1].ToInt64Array());
        }
    }

    [Theory]
    [MemberData(nameof(EngineFixture.OpCaseNames), MemberType = typeof(EngineFixture))]
    public void FirstDerivatives(string name)
    {
        RequireDevice();
        var c = EngineFixture.Op(name);
        var (all, diff) = Inputs(c);
        var output = Ops[name](c, all)[0];
        var grads = Autograd.Grad([output], diff, [Load(c.GradOutput)]);
        for (int i = 0; i < diff.Length; i++)
        {
            AssertClose(c.Grads[c.Diff[i]], grads[i], $"{name} d/d{c.Diff[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(EngineFixture.SecondOrderOpCaseNames), MemberType = typeof(EngineFixture))]
    public void SecondDerivatives(string name)
    {
        RequireDevice();
        var c = EngineFixture.Op(name);
        Assert.True(c.HasSecondOrder);
        var (all, diff) = Inputs(c);
        var output = Ops[name](c, all)[0];
        var grads = Autograd.Grad([output], diff, [Load(c.GradOutput)], createGraph: true);
        Tensor? s = null;
        for (int i = 0; i < diff.Length; i++)
        {
            var term = (grads[i]! * Load(c.GradGradsV[c.Diff[i]])).Sum();
            s = s is null ? term : s + term;
        }
        // A VJP that does not depend on the inputs (a linear op) has no graph: its derivative is zero.
        var second = s!.RequiresGrad
            ? Autograd.Grad([s], diff, allowUnused: true)
            : new Tensor?[diff.Length];
        for (int i = 0; i < diff.Length; i++)
        {
            var expected = c.GradGrads[c.Diff[i]];
            AssertClose(expected, second[i] ?? Tensor.ZerosLike(diff[i]), $"{name} d/d{c.Diff[i]} Σ⟨VJP, v⟩");
        }
    }
}

/// <summary>The single-op fixtures on the managed CPU backend.</summary>
public sealed class OpFixtureTestsOnReference : OpFixtureTests
{
    protected override Device Device => Device.Cpu;
}
