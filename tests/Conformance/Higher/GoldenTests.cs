using System.Globalization;
using Higher.Conformance.Engine;
using Higher.Functional;
using Higher.Optim;

namespace Higher.Conformance.Higher;

/// <summary>
/// Every differentiable optimizer against PyTorch (higher.json): the inner loop rebuilt with
/// <see cref="InnerLoop.Create"/> (time-0 weights the model's own, or copies) and with
/// <see cref="DiffOptim.Get"/> on explicit weight lists; hyperparameters are override tensors that
/// require grad. Training losses, final fast weights and optimizer state, the query loss and the meta-gradients with
/// respect to the initial weights and to every hyperparameter tensor agree to 1e-10 (max-norm
/// relative). A central finite difference of the query loss confirms the meta-gradients
/// independently of PyTorch.
/// </summary>
public sealed class GoldenTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-10;

    /// <summary>How the inner loop is built.</summary>
    public enum Mode
    {
        /// <summary>InnerLoop.Create with copyInitialWeights false: the outer backward fills the model's Grad.</summary>
        ModelWeights,

        /// <summary>InnerLoop.Create with copyInitialWeights true: gradients reach fmodel.Parameters(0), not the model.</summary>
        CopiedWeights,

        /// <summary>DiffOptim.Get without a functional module: Step(loss, params) on explicit weight lists.</summary>
        ExplicitParams,
    }

    public static TheoryData<string, Mode> Cases()
    {
        var data = new TheoryData<string, Mode>();
        foreach (var name in HigherFixture.CaseNames)
        {
            foreach (var mode in Enum.GetValues<Mode>())
            {
                data.Add(name, mode);
            }
        }
        return data;
    }

    /// <summary>A golden case's data, model, optimizer and hyperparameter tensors.</summary>
    private sealed class Setup
    {
        public Setup(GoldenCase c)
        {
            Case = c;
            var weights = c.Weights.Select(w => w.ToTensor(Device.Cpu)).ToArray();
            Model = new TinyMlp(weights);
            Params = Model.Parameters().ToArray();
            Optimizer = Optimizers.Create(c.Optimizer, c.Groups.Select(g => new ParamGroup(g.Params.Select(i => Params[i]), g.Options)));
            var x = c.XTrain.ToTensor(Device.Cpu);
            var y = c.YTrain.ToTensor(Device.Cpu);
            XTrain = Enumerable.Range(0, c.Steps).Select(k => x.Select(0, k)).ToArray();
            YTrain = Enumerable.Range(0, c.Steps).Select(k => y.Select(0, k)).ToArray();
            XQuery = c.XQuery.ToTensor(Device.Cpu);
            YQuery = c.YQuery.ToTensor(Device.Cpu);
            HyperTensors = c.Hypers.ToDictionary(n => n, n => c.Groups.Select(g => Tensor.Scalar(g.Options[n], DType.Float64).WithRequiresGrad()).ToArray());
            Override = new Override();
            foreach (var (name, tensors) in HyperTensors)
            {
                Override.Set(name, tensors.Select(t => (HyperValue)t).ToArray());
            }
        }

        public GoldenCase Case { get; }
        public TinyMlp Model { get; }
        public Tensor[] Params { get; }
        public Optimizer Optimizer { get; }
        public Tensor[] XTrain { get; }
        public Tensor[] YTrain { get; }
        public Tensor XQuery { get; }
        public Tensor YQuery { get; }
        public Dictionary<string, Tensor[]> HyperTensors { get; }
        public Override Override { get; }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MetaGradients_MatchPyTorch(string name, Mode mode)
    {
        var c = HigherFixture.Case(name);
        var s = new Setup(c);
        var losses = new List<double>();
        IReadOnlyList<Tensor> final;
        DifferentiableOptimizer used;
        Tensor query;
        Tensor?[] metaWeights;
        switch (mode)
        {
            case Mode.ModelWeights:
            case Mode.CopiedWeights:
                {
                    bool copy = mode == Mode.CopiedWeights;
                    using var ctx = InnerLoop.Create(s.Model, s.Optimizer, copyInitialWeights: copy, @override: s.Override);
                    var (fmodel, diffopt) = ctx;
                    used = diffopt;
                    Assert.Equal(copy, !ReferenceEquals(fmodel.Parameters(0)[0], s.Params[0]));
                    for (int k = 0; k < c.Steps; k++)
                    {
                        var loss = F.MseLoss(fmodel.Forward(s.XTrain[k]), s.YTrain[k]);
                        losses.Add(loss.Item());
                        diffopt.Step(loss);
                    }
                    final = fmodel.Parameters();
                    query = ctx.Keep(F.MseLoss(fmodel.Forward(s.XQuery), s.YQuery));
                    var time0 = fmodel.Parameters(0);
                    query.Backward();
                    metaWeights = time0.Select(p => p.Grad).ToArray();
                    if (copy)
                    {
                        Assert.All(s.Params, p => Assert.Null(p.Grad));
                    }
                    break;
                }
            default:
                {
                    var diffopt = DiffOptim.Get(s.Optimizer, s.Params, new DifferentiableOptimizerOptions { Override = s.Override });
                    used = diffopt;
                    IReadOnlyList<Tensor> fast = s.Params;
                    for (int k = 0; k < c.Steps; k++)
                    {
                        var loss = F.MseLoss(TinyMlp.Apply(fast, s.XTrain[k]), s.YTrain[k]);
                        losses.Add(loss.Item());
                        fast = diffopt.Step(loss, fast);
                    }
                    final = fast;
                    query = F.MseLoss(TinyMlp.Apply(fast, s.XQuery), s.YQuery);
                    var hyperInputs = s.HyperTensors.Values.SelectMany(t => t).ToArray();
                    var grads = Autograd.Grad([query], [.. s.Params, .. hyperInputs]);
                    metaWeights = grads[..s.Params.Length];
                    for (int i = 0; i < hyperInputs.Length; i++)
                    {
                        hyperInputs[i].Grad = grads[s.Params.Length + i];
                    }
                    break;
                }
        }

        Numeric.AssertClose(c.TrainLosses, losses.ToArray(), Tolerance, $"{name}: training losses");
        double worst = 0;
        string worstWhat = "";
        for (int i = 0; i < 4; i++)
        {
            Check.Close(c.FinalWeights[i].ToTensor(Device.Cpu), final[i], Tolerance, $"{name}: final fast weight {i}");
            var state = used.StateOf(i);
            Assert.NotNull(state);
            Assert.Equal(c.Steps, state.Step);
            foreach (var (key, expected) in c.FinalState[i])
            {
                Assert.True(state.Has(key), $"{name}: weight {i} has no state '{key}'; it has {string.Join(", ", state.Tensors.Keys)}.");
                Check.Close(expected.ToTensor(Device.Cpu), state[key], Tolerance, $"{name}: state '{key}' of weight {i}");
            }
            Track(Check.Error(c.MetaGradWeights[i].ToTensor(Device.Cpu), metaWeights[i]!), $"weight {i}");
            Check.Close(c.MetaGradWeights[i].ToTensor(Device.Cpu), metaWeights[i], Tolerance, $"{name}: meta-gradient w.r.t. initial weight {i}");
        }
        Numeric.AssertClose([c.QueryLoss], [query.Item()], Tolerance, $"{name}: query loss");
        foreach (var (n, expected) in c.MetaGradHypers)
        {
            var actual = s.HyperTensors[n].Select(t => t.Grad?.Item() ?? double.NaN).ToArray();
            for (int gi = 0; gi < expected.Length; gi++)
            {
                Track(Numeric.MaxNormRelativeError([expected[gi]], [actual[gi]]), $"{n}[{gi}]");
                Numeric.AssertClose([expected[gi]], [actual[gi]], Tolerance, $"{name}: meta-gradient w.r.t. {n} (group {gi})");
            }
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name} {mode}: worst meta-gradient relative error {worst:E2} ({worstWhat})"));

        void Track(double error, string what)
        {
            if (error >= worst)
            {
                worst = error;
                worstWhat = what;
            }
        }
    }

    [Fact]
    public void Fixture_CoversEveryOptimizer()
    {
        var covered = HigherFixture.CaseNames.Select(n => HigherFixture.Case(n).Optimizer).ToHashSet();
        Assert.All(Optimizers.Names, n => Assert.Contains(n, covered));
        Assert.All(HigherFixture.CaseNames, n => Assert.NotEmpty(HigherFixture.Case(n).Hypers));
    }

    public static TheoryData<string> FiniteDifferenceCases => new(
        "sgd_momentum", "sgd_nesterov", "adam_weight_decay", "adam_amsgrad", "adamw", "adam_two_groups", "adagrad_lr_decay", "adadelta_weight_decay",
        "adamax", "asgd", "rmsprop_centered_momentum", "rprop", "nadam_weight_decay", "radam_rectified", "adam_zero", "rmsprop_zero");

    /// <summary>
    /// The meta-gradient with respect to every initial weight and hyperparameter against a central
    /// difference of the query loss (float64, h = 1e-6·min(1, |x|); each evaluation is a test-time unroll with
    /// plain-number hyperparameters, so it shares no graph code with the meta-gradient).
    /// </summary>
    [Theory]
    [MemberData(nameof(FiniteDifferenceCases))]
    public void MetaGradients_MatchFiniteDifferences(string name)
    {
        var c = HigherFixture.Case(name);
        var s = new Setup(c);
        using (var ctx = InnerLoop.Create(s.Model, s.Optimizer, copyInitialWeights: false, @override: s.Override))
        {
            var (fmodel, diffopt) = ctx;
            for (int k = 0; k < c.Steps; k++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(s.XTrain[k]), s.YTrain[k]));
            }
            F.MseLoss(fmodel.Forward(s.XQuery), s.YQuery).Backward();
        }
        var analytic = new List<double>();
        foreach (var p in s.Params)
        {
            analytic.AddRange(p.Grad!.ToDoubleArray());
        }
        var hyperSlots = c.Hypers.SelectMany(n => Enumerable.Range(0, c.Groups.Count).Select(gi => (Name: n, Group: gi))).ToArray();
        foreach (var (n, gi) in hyperSlots)
        {
            analytic.Add(s.HyperTensors[n][gi].Grad!.Item());
        }

        var weights = c.Weights.Select(w => w.Values.ToArray()).ToArray();
        var hypers = hyperSlots.Select(h => c.Groups[h.Group].Options[h.Name]).ToArray();
        double QueryLoss()
        {
            var model = new TinyMlp(weights.Select((w, i) => Tensor.FromArray(w, new Shape(c.Weights[i].Shape))).ToArray());
            var ps = model.Parameters().ToArray();
            var opt = Optimizers.Create(c.Optimizer, c.Groups.Select(g => new ParamGroup(g.Params.Select(i => ps[i]), g.Options)));
            var ov = new Override();
            foreach (var group in hyperSlots.GroupBy(h => h.Name))
            {
                ov.Set(group.Key, group.Select(h => (HyperValue)hypers[Array.IndexOf(hyperSlots, h)]).ToArray());
            }
            using var ctx = InnerLoop.Create(model, opt, @override: ov, trackHigherGrads: false);
            var (fmodel, diffopt) = ctx;
            for (int k = 0; k < c.Steps; k++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(s.XTrain[k]), s.YTrain[k]));
            }
            using var _ = Autograd.NoGrad();
            return F.MseLoss(fmodel.Forward(s.XQuery), s.YQuery).Item();
        }

        var numeric = new List<double>();
        foreach (var w in weights)
        {
            for (int i = 0; i < w.Length; i++)
            {
                numeric.Add(Central(ref w[i]));
            }
        }
        for (int i = 0; i < hypers.Length; i++)
        {
            numeric.Add(Central(ref hypers[i]));
        }
        double error = Numeric.MaxNormRelativeError(numeric.ToArray(), analytic.ToArray());
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}: finite differences vs meta-gradient {error:E2}"));
        Numeric.AssertClose(numeric.ToArray(), analytic.ToArray(), 1e-6, $"{name}: meta-gradient vs central differences");

        // A step relative to small values (eps = 1e-4 needs a step far below 1e-6), capped at 1e-6.
        double Central(ref double x)
        {
            double x0 = x;
            double h = x0 == 0 ? 1e-6 : 1e-6 * Math.Min(1, Math.Abs(x0));
            x = x0 + h;
            double up = QueryLoss();
            x = x0 - h;
            double down = QueryLoss();
            x = x0;
            return (up - down) / (2 * h);
        }
    }
}
