using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Higher;

/// <summary>
/// higher's tests/test_optim.py, translated (HIGHER-SEMANTICS.md §4), in float64 with tight
/// tolerances: each differentiable optimizer, side by side with the plain one, on higher's models
/// and configurations (RMSprop included, which higher left commented out); a second parameter
/// group at lr 0.2; meta-gradients finite; override tensors for lr and betas at construction and
/// per step; grad callbacks; frozen parameters; carrying the optimizer state back; the
/// get/apply trainable hyperparameters round trip.
/// </summary>
public sealed class HigherOptimTests
{
    private const double Lr = 0.1;

    /// <summary>(optimizer, options) configurations of higher's sweep and ours.</summary>
    private static readonly (string Name, string Optimizer, Dictionary<string, double> Options)[] Configurations =
    [
        ("sgd", "sgd", []),
        ("sgd_momentum", "sgd", new() { ["momentum"] = 0.1 }),
        ("sgd_nesterov", "sgd", new() { ["momentum"] = 0.1, ["nesterov"] = 1 }),
        ("sgd_weight_decay", "sgd", new() { ["weight_decay"] = 0.1 }),
        ("adam", "adam", []),
        ("adam_weight_decay", "adam", new() { ["weight_decay"] = 0.1 }),
        ("adam_amsgrad", "adam", new() { ["amsgrad"] = 1 }),
        ("adamw", "adamw", []),
        ("adamw_weight_decay", "adamw", new() { ["weight_decay"] = 0.1 }),
        ("adadelta", "adadelta", []),
        ("adadelta_weight_decay", "adadelta", new() { ["weight_decay"] = 0.1 }),
        ("adagrad", "adagrad", []),
        ("adagrad_weight_decay", "adagrad", new() { ["weight_decay"] = 0.1 }),
        ("adagrad_lr_decay", "adagrad", new() { ["lr_decay"] = 0.1 }),
        ("adamax", "adamax", []),
        ("adamax_weight_decay", "adamax", new() { ["weight_decay"] = 0.1 }),
        ("asgd", "asgd", []),
        ("asgd_weight_decay", "asgd", new() { ["weight_decay"] = 0.1 }),
        ("rmsprop", "rmsprop", []),
        ("rmsprop_momentum", "rmsprop", new() { ["momentum"] = 0.1 }),
        ("rmsprop_weight_decay", "rmsprop", new() { ["weight_decay"] = 0.1 }),
        ("rmsprop_centered", "rmsprop", new() { ["centered"] = 1 }),
        ("rmsprop_centered_momentum", "rmsprop", new() { ["centered"] = 1, ["momentum"] = 0.1 }),
        ("rprop", "rprop", []),
        ("nadam", "nadam", []),
        ("nadam_weight_decay", "nadam", new() { ["weight_decay"] = 0.1 }),
        ("radam", "radam", []),
        ("radam_weight_decay", "radam", new() { ["weight_decay"] = 0.1 }),
    ];

    /// <summary>Every configuration on the simple model; each optimizer's plain configuration on the shared-weight and partially-used models.</summary>
    public static TheoryData<string, string> Sweep()
    {
        var data = new TheoryData<string, string>();
        foreach (var (name, optimizer, options) in Configurations)
        {
            data.Add(name, "simple");
            if (options.Count == 0)
            {
                data.Add(name, "shared");
                data.Add(name, "shared_seq");
                data.Add(name, "partially_used");
            }
        }
        return data;
    }

    private static (string Optimizer, Dictionary<string, double> Options) Configuration(string name)
    {
        var c = Configurations.Single(c => c.Name == name);
        return (c.Optimizer, new Dictionary<string, double>(c.Options) { ["lr"] = Lr });
    }

    /// <summary>
    /// higher's _run_correctness_test: 10 rounds; each patches the (plainly trained) model afresh and
    /// builds the differentiable optimizer from the plain one's current state, then 3 steps of both
    /// side by side on the same batches. The functional weights must match the model's.
    /// </summary>
    private static void RunCorrectness(Module model, Optimizer opt, Generator g, Override? @override = null)
    {
        for (int round = 0; round < 10; round++)
        {
            var fmodel = Patch.Monkeypatch(model);
            var diffopt = DiffOptim.Get(opt, model.Parameters(), new DifferentiableOptimizerOptions { FModel = fmodel, Override = @override });
            for (int j = 0; j < 3; j++)
            {
                opt.ZeroGrad();
                var x = TestModels.Rand(g, 10, 4);
                var lossModel = model.Forward(x).Square().Sum();
                var lossFmodel = fmodel.Forward(x).Square().Sum();
                lossModel.Backward();
                diffopt.Step(lossFmodel);
                opt.Step();
                Assert.Equal(model.Parameters().Count, fmodel.Parameters().Count);
            }
            Check.Close(model.Parameters().ToList(), fmodel.Parameters(), 1e-12, $"round {round}: fast weights vs the plainly trained model");

            // The meta-gradient through the three differentiable steps is finite.
            var time0 = fmodel.Parameters(0);
            var paramSum = fmodel.Parameters().Select(p => p.Sum()).Aggregate((a, b) => a + b);
            var used = time0.Where(p => p.RequiresGrad).ToList();
            foreach (var grad in Autograd.Grad([paramSum], used, allowUnused: true))
            {
                if (grad is not null)
                {
                    Check.Finite(grad, $"round {round}: meta-gradient");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Sweep))]
    public void DiffOpt_MatchesPlainOptimizer(string configuration, string modelName)
    {
        var g = new Generator(11);
        var model = TestModels.Build(modelName, g);
        var (optimizer, options) = Configuration(configuration);
        var opt = Optimizers.Create(optimizer, model.Parameters(), options);
        RunCorrectness(model, opt, g);
    }

    /// <summary>higher's testDiffOptGroupedParam: the first half of the parameters in a group at lr 0.2, the rest at the default 0.1.</summary>
    [Theory]
    [MemberData(nameof(Sweep))]
    public void DiffOpt_MatchesPlainOptimizer_WithTwoParameterGroups(string configuration, string modelName)
    {
        var g = new Generator(12);
        var model = TestModels.Build(modelName, g);
        var (optimizer, options) = Configuration(configuration);
        var opt = Optimizers.Create(optimizer, TwoGroups(model, options));
        Assert.Equal(0.2, opt.ParamGroups[0]["lr"]);
        Assert.Equal(0.1, opt.ParamGroups[1]["lr"]);
        RunCorrectness(model, opt, g);
    }

    private static ParamGroup[] TwoGroups(Module model, Dictionary<string, double> options)
    {
        var all = model.Parameters().ToList();
        int half = all.Count / 2;
        return [new ParamGroup(all.Take(half), new Dictionary<string, double>(options) { ["lr"] = 0.2 }), new ParamGroup(all.Skip(half), options)];
    }

    /// <summary>
    /// higher's testDiffOptGroupedParamLearn and ...Stepwise: lr as one tensor for both groups, beta1
    /// and beta2 as one tensor per group, given at construction or to every step; the meta-gradient
    /// of the sum of the final fast weights is finite and non-zero for each of them. Both ways give
    /// the same result.
    /// </summary>
    /// <remarks>RAdam's beta2 only enters once its rectification starts (ρ_t &gt; 5), hence 8 steps and smaller beta2 there.</remarks>
    [Theory]
    [InlineData("adam", 3, 0.999, 0.888)]
    [InlineData("adamw", 3, 0.999, 0.888)]
    [InlineData("adamax", 3, 0.999, 0.888)]
    [InlineData("nadam", 3, 0.999, 0.888)]
    [InlineData("radam", 8, 0.8, 0.75)]
    public void OverrideTensors_ForLrAndBetas_GiveFiniteNonZeroMetaGradients(string optimizer, int steps, double beta2Left, double beta2Right)
    {
        var results = new List<Tensor[]>();
        foreach (bool stepwise in new[] { false, true })
        {
            var g = new Generator(13);
            var model = TestModels.Simple(g);
            var opt = Optimizers.Create(optimizer, TwoGroups(model, new() { ["lr"] = Lr }));
            var lr = Tensor.Scalar(0.3, DType.Float64).WithRequiresGrad();
            Tensor[] beta1 = [Tensor.Scalar(0.9, DType.Float64).WithRequiresGrad(), Tensor.Scalar(0.8, DType.Float64).WithRequiresGrad()];
            Tensor[] beta2 = [Tensor.Scalar(beta2Left, DType.Float64).WithRequiresGrad(), Tensor.Scalar(beta2Right, DType.Float64).WithRequiresGrad()];
            var ov = new Override().Set("lr", lr).Set("beta1", beta1[0], beta1[1]).Set("beta2", beta2[0], beta2[1]);
            var fmodel = Patch.Monkeypatch(model);
            var diffopt = DiffOptim.Get(opt, model.Parameters(), new DifferentiableOptimizerOptions { FModel = fmodel, Override = stepwise ? null : ov });
            for (int j = 0; j < steps; j++)
            {
                var loss = fmodel.Forward(TestModels.Rand(g, 10, 4)).Square().Sum();
                diffopt.Step(loss, @override: stepwise ? ov : null);
            }
            var paramSum = fmodel.Parameters().Select(p => p.Sum()).Aggregate((a, b) => a + b);
            Tensor[] meta = [lr, .. beta1, .. beta2];
            var grads = Autograd.Grad([paramSum], meta);
            for (int i = 0; i < grads.Length; i++)
            {
                Check.Finite(grads[i], $"{optimizer}: hyperparameter {i}");
                Check.NonZero(grads[i], $"{optimizer}: hyperparameter {i}");
            }
            results.Add(grads.Select(t => t!).ToArray());
        }
        Check.Same(results[0], results[1], $"{optimizer}: override at construction vs at every step");
    }

    /// <summary>Tuple hyperparameters given whole, as higher's override does: "betas" as a 2-element tensor per group, and Rprop's "etas".</summary>
    [Fact]
    public void OverrideTensors_PairsGivenWhole_ReceiveGradients()
    {
        var g = new Generator(14);
        var model = TestModels.Simple(g);
        var betas = Tensor.FromArray(new[] { 0.85, 0.99 }).WithRequiresGrad();
        using (var ctx = InnerLoop.Create(model, new Adam(model.Parameters(), new AdamOptions { Lr = Lr }), @override: new Override().Set("betas", betas)))
        {
            var (fmodel, diffopt) = ctx;
            for (int j = 0; j < 3; j++)
            {
                diffopt.Step(fmodel.Forward(TestModels.Rand(g, 10, 4)).Square().Sum());
            }
            fmodel.Forward(TestModels.Rand(g, 10, 4)).Square().Sum().Backward();
        }
        Check.Finite(betas.Grad, "betas");
        Assert.All(betas.Grad!.ToDoubleArray(), v => Assert.NotEqual(0, v));

        var etas = Tensor.FromArray(new[] { 0.4, 1.3 }).WithRequiresGrad();
        using (var ctx = InnerLoop.Create(model, new Rprop(model.Parameters(), new RpropOptions { Lr = 0.01 }), @override: new Override().Set("etas", etas)))
        {
            var (fmodel, diffopt) = ctx;
            for (int j = 0; j < 4; j++)
            {
                diffopt.Step(fmodel.Forward(TestModels.Rand(g, 10, 4)).Square().Sum());
            }
            fmodel.Forward(TestModels.Rand(g, 10, 4)).Square().Sum().Backward();
        }
        Check.Finite(etas.Grad, "etas");
        Check.NonZero(etas.Grad, "etas");
    }

    /// <summary>
    /// An override given to one step persists for later steps (as in higher): giving it once equals
    /// giving it every time, and differs from never giving it.
    /// </summary>
    [Fact]
    public void StepOverride_Persists()
    {
        IReadOnlyList<Tensor> Run(Func<int, Override?> overrideAt)
        {
            var g = new Generator(15);
            var model = TestModels.Simple(g);
            using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = Lr, Momentum = 0.5 }));
            var (fmodel, diffopt) = ctx;
            for (int j = 0; j < 3; j++)
            {
                diffopt.Step(fmodel.Forward(TestModels.Rand(g, 10, 4)).Square().Sum(), @override: overrideAt(j));
            }
            return fmodel.Parameters();
        }
        var once = Run(j => j == 0 ? new Override().Set("lr", 0.05) : null);
        var always = Run(_ => new Override().Set("lr", 0.05));
        var never = Run(_ => null);
        Check.Same(always, once, "override once vs at every step");
        Assert.False(Check.Equal(never[0], once[0]));
    }

    /// <summary>
    /// higher's testDiffOptCallback: callbacks scaling the gradients by 0.1 and 0.2 change the
    /// trajectory; the step's callback is the one used when the constructor also has one.
    /// </summary>
    [Fact]
    public void GradCallback_StepArgumentWinsOverConstructorDefault()
    {
        GradCallback times01 = grads => grads.Select(t => t is null ? null : t * 0.1).ToList();
        GradCallback times02 = grads => grads.Select(t => t is null ? null : t * 0.2).ToList();
        var g = new Generator(16);
        var model = TestModels.Simple(g);
        var opt = new Sgd(TwoGroups(model, new() { ["lr"] = Lr, ["momentum"] = 0.5 }));
        var runs = new (GradCallback? Constructor, GradCallback? Step)[] { (null, null), (times01, null), (times02, null), (null, times02), (times01, times02) };
        var fmodels = runs.Select(_ => Patch.Monkeypatch(model)).ToArray();
        var diffopts = runs.Select((r, i) => DiffOptim.Get(opt, model.Parameters(), new DifferentiableOptimizerOptions { FModel = fmodels[i], GradCallback = r.Constructor })).ToArray();
        for (int j = 0; j < 3; j++)
        {
            var x = TestModels.Rand(g, 10, 4);
            for (int i = 0; i < runs.Length; i++)
            {
                diffopts[i].Step(fmodels[i].Forward(x).Square().Sum(), gradCallback: runs[i].Step);
            }
        }
        bool Same(int a, int b) => fmodels[a].Parameters().Zip(fmodels[b].Parameters()).All(p => Check.Equal(p.First, p.Second));
        Assert.False(Same(0, 1));
        Assert.False(Same(0, 2));
        Assert.False(Same(1, 2));
        Assert.True(Same(2, 3), "the step's callback equals the same callback given to the constructor");
        Assert.True(Same(2, 4), "the step's callback wins over the constructor's");

        // A callback returning the wrong number of gradients is an error that says so.
        var fm = Patch.Monkeypatch(model);
        var bad = DiffOptim.Get(opt, model.Parameters(), new DifferentiableOptimizerOptions { FModel = fm, GradCallback = grads => grads.Take(1).ToList() });
        var ex = Assert.Throws<InvalidOperationException>(() => bad.Step(fm.Forward(TestModels.Rand(g, 10, 4)).Square().Sum()));
        Assert.Contains("callback", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>higher's testFrozenParameters net: fc1 Linear(30, 50) frozen, fc2 Linear(50, 1) trained, BCE with logits.</summary>
    private sealed class FrozenNet : Module
    {
        private readonly Linear _fc1;
        private readonly Linear _fc2;

        public FrozenNet(Generator g)
        {
            _fc1 = RegisterModule("fc1", new Linear(30, 50, generator: g));
            _fc2 = RegisterModule("fc2", new Linear(50, 1, generator: g));
            To(DType.Float64);
            _fc1.Weight.RequiresGrad = false;
            _fc1.Bias!.RequiresGrad = false;
        }

        public override Tensor Forward(Tensor input) => _fc2.Forward(_fc1.Forward(input)).Squeeze(1);
    }

    /// <summary>
    /// higher's testFrozenParameters: frozen parameters pass through every step unchanged and never
    /// start requiring grad, whether the optimizer holds only the trainable parameters or all of
    /// them, and also with tracking off (where higher's frozen parameters started updating after
    /// the first step).
    /// </summary>
    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(false, false)]
    public void FrozenParameters_StayUnchangedAndFrozen(bool optimizerHoldsOnlyTrainable, bool trackHigherGrads)
    {
        var g = new Generator(17);
        var net = new FrozenNet(g);
        var inputs = Tensor.Randn([16, 30], DType.Float64, g);
        var labels = Tensor.Cat([Tensor.Ones([8], DType.Float64), Tensor.Zeros([8], DType.Float64)]);
        var parameters = optimizerHoldsOnlyTrainable ? net.Parameters().Where(p => p.RequiresGrad) : net.Parameters();
        var opt = new Sgd(parameters, new SgdOptions { Lr = 0.1 });
        using var ctx = InnerLoop.Create(net, opt, trackHigherGrads: trackHigherGrads);
        var (fnet, diffopt) = ctx;
        for (int step = 0; step < 3; step++)
        {
            diffopt.Step(F.BinaryCrossEntropyWithLogits(fnet.Forward(inputs), labels));
            var pairs = net.Parameters().Zip(fnet.Parameters()).ToArray();
            Assert.True(Check.Equal(pairs[0].First, pairs[0].Second), $"step {step}: fc1.weight changed");
            Assert.True(Check.Equal(pairs[1].First, pairs[1].Second), $"step {step}: fc1.bias changed");
            Assert.False(Check.Equal(pairs[2].First, pairs[2].Second), $"step {step}: fc2.weight did not change");
            Assert.False(Check.Equal(pairs[3].First, pairs[3].Second), $"step {step}: fc2.bias did not change");
            Assert.False(fnet.Parameters()[0].RequiresGrad, $"step {step}: fc1.weight requires grad");
            Assert.False(fnet.Parameters()[1].RequiresGrad, $"step {step}: fc1.bias requires grad");
            Assert.True(fnet.Parameters()[2].RequiresGrad);
            Assert.Equal(trackHigherGrads, !fnet.Parameters()[2].IsLeaf);
        }
    }

    /// <summary>
    /// higher's testGetApplyRoundTrip: every numeric hyperparameter of every group comes out as a
    /// tensor that requires grad; applied to an optimizer with other values, the groups become equal
    /// to the original's (flags untouched). Applying changed tensor values writes them.
    /// </summary>
    [Fact]
    public void GetApplyTrainableOptParams_RoundTrip()
    {
        var g = new Generator(18);
        var model = TestModels.Simple(g);
        var all = model.Parameters().ToList();
        int half = all.Count / 2;
        var opt = new Adam([new ParamGroup(all.Take(half), new Dictionary<string, double> { ["lr"] = 0.2 }), new ParamGroup(all.Skip(half))], new AdamOptions { Lr = Lr, Amsgrad = true });
        var trainable = DiffOptim.GetTrainableOptParams(opt);
        Assert.Equal(new[] { "beta1", "beta2", "eps", "lr", "weight_decay" }, trainable.Keys.Order(StringComparer.Ordinal).ToArray());
        foreach (var name in trainable.Keys)
        {
            Assert.Equal(2, trainable[name].Count);
            Assert.All(trainable[name], v => Assert.True(v.IsTensor && v.Tensor!.RequiresGrad, $"{name} is not a tensor that requires grad"));
        }
        Assert.False(trainable.Contains("amsgrad"));

        var other = new Adam([new ParamGroup(all.Take(half), new Dictionary<string, double> { ["lr"] = 1.2 }), new ParamGroup(all.Skip(half))], new AdamOptions { Lr = Lr + 5, Amsgrad = true });
        DiffOptim.ApplyTrainableOptParams(other, trainable);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(opt.ParamGroups[i].Options.OrderBy(kv => kv.Key, StringComparer.Ordinal), other.ParamGroups[i].Options.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        }

        // "Learned" values are written back.
        var learned = new Override().Set("lr", 0.05, 0.07).Set("beta1", Tensor.Scalar(0.5, DType.Float64).WithRequiresGrad());
        DiffOptim.ApplyTrainableOptParams(other, learned);
        Assert.Equal(0.05, other.ParamGroups[0]["lr"]);
        Assert.Equal(0.07, other.ParamGroups[1]["lr"]);
        Assert.Equal(0.5, other.ParamGroups[0]["beta1"]);
        Assert.Equal(0.5, other.ParamGroups[1]["beta1"]);
        Assert.Throws<ArgumentException>(() => DiffOptim.ApplyTrainableOptParams(other, new Override().Set("lr", 0.1, 0.2, 0.3)));
    }

    /// <summary>
    /// higher's testDiffOptStateDict, in our terms: writing the differentiable optimizer's state
    /// (<see cref="DifferentiableOptimizer.CopyStateTo"/>) and the fast weights back after each
    /// context makes three contexts of 3 Adam steps equal 9 plain steps; writing the weights back
    /// without the state does not.
    /// </summary>
    [Fact]
    public void StateWrittenBack_ContextsEqualPlainTraining()
    {
        var g = new Generator(19);
        var model1 = TestModels.Simple(new Generator(20));
        var model2 = TestModels.Simple(new Generator(20));
        var model3 = TestModels.Simple(new Generator(20));
        var model4 = TestModels.Simple(new Generator(20));
        var opt1 = new Adam(model1.Parameters(), new AdamOptions { Lr = Lr });
        var opt2 = new Adam(model2.Parameters(), new AdamOptions { Lr = Lr });
        var opt3 = new Adam(model3.Parameters(), new AdamOptions { Lr = Lr });
        var opt4 = new Adam(model4.Parameters(), new AdamOptions { Lr = Lr });
        for (int i = 0; i < 3; i++)
        {
            Inner(model1, opt1, model2, opt2, carryState: true);
            Inner(model3, opt3, model4, opt4, carryState: false);
        }
        Check.Close(model2.Parameters().ToList(), model1.Parameters().ToList(), 1e-12, "state carried");
        Assert.False(Check.Equal(model3.Parameters()[0], model4.Parameters()[0]), "without the state the runs should differ");

        void Inner(Module model, Optimizer opt, Module reference, Optimizer referenceOpt, bool carryState)
        {
            using var ctx = InnerLoop.Create(model, opt);
            var (fmodel, diffopt) = ctx;
            // The plain optimizer steps inside the context: its state must outlive it.
            ctx.Scope?.Keep(referenceOpt);
            for (int j = 0; j < 3; j++)
            {
                var x = TestModels.Rand(g, 10, 4);
                diffopt.Step(fmodel.Forward(x).Square().Sum());
                referenceOpt.ZeroGrad();
                reference.Forward(x).Square().Sum().Backward();
                referenceOpt.Step();
            }
            if (carryState)
            {
                diffopt.CopyStateTo(opt, model.Parameters());
            }
            using var _ = Autograd.NoGrad();
            foreach (var (p, fast) in model.Parameters().Zip(fmodel.Parameters()))
            {
                p.CopyFrom(fast);
            }
        }
    }
}
