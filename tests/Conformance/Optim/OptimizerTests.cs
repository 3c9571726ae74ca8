using Higher.Conformance.Engine;
using Higher.Optim;

namespace Higher.Conformance.Optim;

/// <summary>
/// Optimizer behaviour beyond the torch trajectories: validation (each failure names the bad
/// value, with a happy twin), groups added later, hyperparameters by name, ZeroGrad, closures,
/// maximize for the optimizers torch 1.13 lacks it on, and the update rules' tensor
/// hyperparameters: equal values to the plain rule and gradients that match finite differences.
/// </summary>
public sealed class OptimizerTests
{
    private static Tensor Param(params double[] values) => Tensor.FromArray(values).WithRequiresGrad();

    private static IEnumerable<Tensor> One() => [Param(1, 2)];

    private static ArgumentException Invalid(Func<Optimizer> create, string value)
    {
        var e = Assert.Throws<ArgumentException>(() => create());
        Assert.Contains(value, e.Message, StringComparison.Ordinal);
        return e;
    }

    [Fact]
    public void Validation_RejectsBadValues_NamingThem()
    {
        Invalid(() => new Sgd(One(), new SgdOptions { Lr = -0.5 }), "-0.5");
        Invalid(() => new Sgd(One(), new SgdOptions { Momentum = -0.25 }), "-0.25");
        Assert.Contains("Nesterov", Invalid(() => new Sgd(One(), new SgdOptions { Nesterov = true }), "momentum 0").Message, StringComparison.Ordinal);
        Invalid(() => new Sgd(One(), new SgdOptions { Nesterov = true, Momentum = 0.9, Dampening = 0.1 }), "dampening 0.1");
        Invalid(() => new Adam(One(), new AdamOptions { Eps = -1e-8 }), "-1E-08");
        Invalid(() => new Adam(One(), new AdamOptions { Betas = (1.0, 0.999) }), "beta1");
        Invalid(() => new AdamW(One(), new AdamOptions { Betas = (0.9, -0.1) }), "beta2");
        Invalid(() => new Adam(One(), new AdamOptions { WeightDecay = -1 }), "weight_decay");
        Invalid(() => new Adagrad(One(), new AdagradOptions { LrDecay = -0.1 }), "lr_decay");
        Invalid(() => new Adagrad(One(), new AdagradOptions { InitialAccumulatorValue = -2 }), "initial_accumulator_value");
        Invalid(() => new Adagrad(One(), new AdagradOptions { Eps = -3 }), "-3");
        Invalid(() => new Adadelta(One(), new AdadeltaOptions { Rho = 1.5 }), "1.5");
        Invalid(() => new Adadelta(One(), new AdadeltaOptions { Eps = -1 }), "eps");
        Invalid(() => new Adamax(One(), new AdamaxOptions { Betas = (0.9, 1.0) }), "beta2");
        Invalid(() => new Asgd(One(), new AsgdOptions { Lr = -1 }), "lr");
        Invalid(() => new Asgd(One(), new AsgdOptions { WeightDecay = -1 }), "weight_decay");
        Invalid(() => new RmsProp(One(), new RmsPropOptions { Alpha = -0.9 }), "-0.9");
        Invalid(() => new RmsProp(One(), new RmsPropOptions { Momentum = -1 }), "momentum");
        Invalid(() => new RmsProp(One(), new RmsPropOptions { Eps = -1 }), "eps");
        Invalid(() => new Rprop(One(), new RpropOptions { Etas = (1.5, 1.2) }), "eta_minus 1.5");
        Invalid(() => new Rprop(One(), new RpropOptions { Etas = (0.5, 0.9) }), "eta_plus 0.9");
        Invalid(() => new Rprop(One(), new RpropOptions { StepSizes = (1, 0.5) }), "step_size_min 1");
        Invalid(() => new NAdam(One(), new NAdamOptions { MomentumDecay = -1 }), "momentum_decay");
        Invalid(() => new NAdam(One(), new NAdamOptions { Betas = (-0.1, 0.999) }), "-0.1");
        Invalid(() => new RAdam(One(), new RAdamOptions { Betas = (0.9, 1.2) }), "1.2");
        Invalid(() => new RAdam(One(), new RAdamOptions { Lr = double.NaN }), "NaN");
        Assert.Throws<ArgumentException>(() => new Sgd(Array.Empty<Tensor>()));
    }

    [Fact]
    public void Validation_AcceptsBoundaryValues()
    {
        _ = new Sgd(One(), new SgdOptions { Lr = 0, Nesterov = true, Momentum = 0.9 });
        _ = new Adam(One(), new AdamOptions { Betas = (0, 0), Eps = 0 });
        _ = new Adadelta(One(), new AdadeltaOptions { Rho = 1 });
        _ = new Rprop(One(), new RpropOptions { Etas = (0.01, 1.01), StepSizes = (0, 0) });
        _ = new RmsProp(One(), new RmsPropOptions { Alpha = 0, Centered = true });
    }

    [Fact]
    public void AddParamGroup_Later_TakesDefaults_AndIsValidated()
    {
        var first = Param(1);
        var second = Param(2);
        var sgd = new Sgd([first], new SgdOptions { Lr = 0.5 });
        sgd.AddParamGroup(new ParamGroup([second], new Dictionary<string, double> { ["momentum"] = 0.9 }));
        Assert.Equal(0.5, sgd.ParamGroups[1]["lr"]);
        Assert.Equal(0.9, sgd.ParamGroups[1]["momentum"]);
        second.Grad = Tensor.FromArray([1.0]);
        sgd.Step();
        Assert.Equal(1.5, second.Item());
        Assert.Equal(1, first.Item());
        Invalid(() => { sgd.AddParamGroup(new ParamGroup([Param(3)], new Dictionary<string, double> { ["lr"] = -1 })); return sgd; }, "-1");
        Assert.Throws<ArgumentException>(() => sgd.AddParamGroup(new ParamGroup([first])));
    }

    [Fact]
    public void Hyperparameters_AreReadAndWrittenByName()
    {
        var p = Param(1);
        var sgd = new Sgd([p], new SgdOptions { Lr = 0.1 });
        Assert.Equal(0.1, sgd.ParamGroups[0]["lr"]);
        sgd.ParamGroups[0]["lr"] = 0.25;
        p.Grad = Tensor.FromArray([2.0]);
        sgd.Step();
        Assert.Equal(0.5, p.Item());
        var e = Assert.Throws<KeyNotFoundException>(() => sgd.ParamGroups[0]["betas"]);
        Assert.Contains("lr", e.Message, StringComparison.Ordinal);
        Assert.Equal(0.25, sgd.HyperParameterGroups[0]["lr"]);
    }

    [Fact]
    public void ZeroGrad_ClosureStep_AndParametersWithoutGradient()
    {
        var a = Param(1, 2);
        var b = Param(3);
        var adam = new Adam([a, b], new AdamOptions { Lr = 0.1 });
        var loss = adam.Step(() =>
        {
            var l = (a * a).Sum();
            l.Backward();
            return l;
        });
        Assert.Equal(5, loss.Item());
        Assert.True(adam.State.ContainsKey(a));
        Assert.False(adam.State.ContainsKey(b));
        Assert.Equal(3, b.Item());
        adam.ZeroGrad();
        Assert.Null(a.Grad);
    }

    public static TheoryData<string> MaximizeKinds => new("NAdam", "RAdam", "SGD", "Adam", "RMSprop", "Rprop");

    [Theory]
    [MemberData(nameof(MaximizeKinds))]
    public void Maximize_EqualsMinimizingTheNegation(string kind)
    {
        var up = OptimFixture.Model(Device.Cpu);
        var down = OptimFixture.Model(Device.Cpu);
        var options = new Dictionary<string, double> { ["lr"] = 0.01, ["maximize"] = 1 };
        var maximizer = OptimizerFixtureTests.Create(kind, [new ParamGroup(up.Parameters(), options)]);
        var minimizer = OptimizerFixtureTests.Create(kind, [new ParamGroup(down.Parameters(), new Dictionary<string, double> { ["lr"] = 0.01 })]);
        for (int i = 0; i < 5; i++)
        {
            maximizer.ZeroGrad();
            OptimFixture.Loss(up, Device.Cpu).Backward();
            maximizer.Step();
            minimizer.ZeroGrad();
            OptimFixture.Loss(down, Device.Cpu).Neg().Backward();
            minimizer.Step();
        }
        foreach (var ((name, a), (_, b)) in up.NamedParameters().Zip(down.NamedParameters()))
        {
            Numeric.AssertClose(b.ToDoubleArray(), a.ToDoubleArray(), 1e-14, $"{kind} maximize: {name}");
        }
    }

    /// <summary>Hyperparameters given per name as numbers or tensors.</summary>
    private sealed class Hyper(Dictionary<string, HyperValue> values) : IHyperParameters
    {
        public HyperValue this[string name] => values[name];

        public bool Flag(string name) => values.TryGetValue(name, out var v) && v.Value != 0;
    }

    /// <summary>Each optimizer with a configuration that exercises every non-flag hyperparameter.</summary>
    public static TheoryData<string, string> TensorHyperCases
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var (kind, options) in HyperConfigs)
            {
                foreach (var name in options.Keys.Where(k => k is not ("nesterov" or "amsgrad" or "maximize" or "centered")))
                {
                    data.Add(kind, name);
                }
            }
            return data;
        }
    }

    private static readonly (string Kind, Dictionary<string, double> Options)[] HyperConfigs =
    [
        ("SGD", new() { ["lr"] = 0.1, ["momentum"] = 0.8, ["dampening"] = 0.2, ["weight_decay"] = 0.1, ["nesterov"] = 0, ["maximize"] = 0 }),
        ("Adam", new() { ["lr"] = 0.1, ["beta1"] = 0.8, ["beta2"] = 0.9, ["eps"] = 0.01, ["weight_decay"] = 0.1, ["amsgrad"] = 1, ["maximize"] = 0 }),
        ("AdamW", new() { ["lr"] = 0.1, ["beta1"] = 0.8, ["beta2"] = 0.9, ["eps"] = 0.01, ["weight_decay"] = 0.1, ["amsgrad"] = 0, ["maximize"] = 0 }),
        ("Adagrad", new() { ["lr"] = 0.1, ["lr_decay"] = 0.1, ["weight_decay"] = 0.1, ["initial_accumulator_value"] = 0.3, ["eps"] = 0.01, ["maximize"] = 0 }),
        ("Adadelta", new() { ["lr"] = 0.9, ["rho"] = 0.7, ["eps"] = 0.01, ["weight_decay"] = 0.1, ["maximize"] = 0 }),
        ("Adamax", new() { ["lr"] = 0.1, ["beta1"] = 0.8, ["beta2"] = 0.9, ["eps"] = 0.01, ["weight_decay"] = 0.1, ["maximize"] = 0 }),
        ("ASGD", new() { ["lr"] = 0.1, ["lambd"] = 0.05, ["alpha"] = 0.6, ["t0"] = 0.5, ["weight_decay"] = 0.1, ["maximize"] = 0 }),
        ("RMSprop", new() { ["lr"] = 0.1, ["alpha"] = 0.8, ["eps"] = 0.01, ["weight_decay"] = 0.1, ["momentum"] = 0.5, ["centered"] = 1, ["maximize"] = 0 }),
        ("Rprop", new() { ["lr"] = 0.1, ["eta_minus"] = 0.4, ["eta_plus"] = 1.3, ["step_size_min"] = 0.01, ["step_size_max"] = 0.3, ["maximize"] = 0 }),
        ("NAdam", new() { ["lr"] = 0.1, ["beta1"] = 0.8, ["beta2"] = 0.9, ["eps"] = 0.01, ["weight_decay"] = 0.1, ["momentum_decay"] = 0.2, ["maximize"] = 0 }),
        ("RAdam", new() { ["lr"] = 0.1, ["beta1"] = 0.8, ["beta2"] = 0.7, ["eps"] = 0.01, ["weight_decay"] = 0.1, ["maximize"] = 0 }),
    ];

    /// <summary>
    /// Σ of the parameters after four updates with fixed gradients (chosen so that Rprop's clamp
    /// binds on some steps and RAdam's ρ_t &gt; 5 switch is taken), with hyperparameter
    /// <paramref name="name"/> as given and all others as numbers.
    /// </summary>
    private static Tensor Unroll(string kind, string name, HyperValue value)
    {
        var (_, options) = HyperConfigs.Single(c => c.Kind == kind);
        var values = options.ToDictionary(kv => kv.Key, kv => (HyperValue)kv.Value);
        values[name] = value;
        var hyper = new Hyper(values);
        var rule = OptimizerFixtureTests.Create(kind, [new ParamGroup([Param(0)], options)]);
        var p = Tensor.FromArray([0.5, -1.0, 2.0, 0.25], new Shape(4));
        var state = new ParamState();
        double[][] grads = [[0.3, -0.2, 0.5, 0.1], [0.2, 0.4, -0.5, 0.1], [-0.1, 0.3, 0.6, 0.2], [0.25, -0.35, 0.45, -0.05]];
        foreach (var g in grads)
        {
            p = rule.Update(p, Tensor.FromArray(g), state, hyper);
        }
        return p.Sum();
    }

    [Theory]
    [MemberData(nameof(TensorHyperCases))]
    public void TensorHyperparameter_GivesTheSameUpdate_AndItsGradientMatchesFiniteDifferences(string kind, string name)
    {
        double value = HyperConfigs.Single(c => c.Kind == kind).Options[name];
        double plain = Unroll(kind, name, value).Item();
        var h = Tensor.Scalar(value, DType.Float64).WithRequiresGrad();
        var result = Unroll(kind, name, h);
        Numeric.AssertClose([plain], [result.Item()], 1e-14, $"{kind}: {name} as a tensor");
        double analytic = result.RequiresGrad ? Autograd.Grad([result], [h], allowUnused: true)[0]?.Item() ?? 0 : 0;
        const double step = 1e-6;
        double numeric = (Unroll(kind, name, value + step).Item() - Unroll(kind, name, value - step).Item()) / (2 * step);
        Assert.True(double.IsFinite(analytic), $"{kind}: d/d{name} is {analytic}");
        Assert.True(Math.Abs(analytic - numeric) <= 1e-6 + 1e-5 * Math.Abs(numeric),
            FormattableString.Invariant($"{kind}: d(Σp)/d{name} = {analytic:R} analytically, {numeric:R} by central differences."));
    }

    [Fact]
    public void SafeSqrt_KeepsMetaGradientsFinite_WhereTheSecondMomentIsZero()
    {
        // A zero gradient leaves v = 0: the plain √ would send an infinite derivative into lr's.
        var lr = Tensor.Scalar(0.1, DType.Float64).WithRequiresGrad();
        var adam = new Adam([Param(0)]);
        var state = new ParamState();
        var p = Tensor.FromArray([1.0, 2.0]).WithRequiresGrad();
        var values = adam.ParamGroups[0].Options.ToDictionary(kv => kv.Key, kv => (HyperValue)kv.Value);
        values["lr"] = lr;
        var next = adam.Update(p, p * Tensor.FromArray([0.0, 1.0]), state, new Hyper(values));
        var grads = Autograd.Grad([next.Sum()], [p, lr]);
        Assert.All(grads, g => Assert.All(g!.ToDoubleArray(), v => Assert.True(double.IsFinite(v), $"gradient {v}")));
    }

    [Fact]
    public void StateDict_LoadIntoDifferentGroupLayout_Throws()
    {
        var a = new Sgd([Param(1), Param(2)]);
        var b = new Sgd([new ParamGroup([Param(1)]), new ParamGroup([Param(2)])]);
        Assert.Contains("groups", Assert.Throws<ArgumentException>(() => b.LoadStateDict(a.StateDict())).Message, StringComparison.Ordinal);
    }
}
