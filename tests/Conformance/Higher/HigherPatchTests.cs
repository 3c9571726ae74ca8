using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Higher;

/// <summary>
/// higher's tests/test_patch.py, translated (HIGHER-SEMANTICS.md §4), on the simple, shared-weight
/// (nested and sequential), partially-used and BatchNorm models: functional parameters, forward and
/// gradient equality with the module, a manual unroll equal to the inner-loop context, mini-MAML
/// (copyInitialWeights false: the model's Grad is the gradient w.r.t. time-0 weights), test-time
/// mode, recurrent layers and cells, and direct submodule calls.
/// </summary>
public sealed class HigherPatchTests
{
    private const double Lr = 0.1;

    public static TheoryData<string> Models => new(TestModels.PatchModels);

    private static Tensor Loss(Tensor output) => output.Sum().Square();

    /// <summary>Which parameters the loss uses (higher's _get_used_params_mask).</summary>
    private static bool[] UsedMask(Module model, Tensor inputs)
    {
        var ps = model.Parameters().ToList();
        var grads = Autograd.Grad([Loss(model.Forward(inputs))], ps, allowUnused: true);
        return grads.Select(g => g is not null).ToArray();
    }

    [Fact]
    public void MakeFunctional_TimeZeroWeightsAreTheModulesOwn()
    {
        var linear = new Linear(4, 3, generator: new Generator(1));
        var fmodel = Patch.MakeFunctional(linear);
        Assert.Equal(new[] { "weight", "bias" }, fmodel.ParameterNames);
        Assert.Same(linear.Weight.Data, fmodel.Parameters(0)[0]);
        Assert.Same(linear.Bias!.Data, fmodel.Parameters(0)[1]);
        var x = Tensor.Rand([2, 4], generator: new Generator(2));
        Check.Same(linear.Forward(x), fmodel.Forward(x), "forward");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void GetFuncParams_AndPatchedParameters_EqualTheModels(string name)
    {
        var model = TestModels.Build(name, new Generator(3));
        var parameters = Utils.GetFuncParams(model);
        var fmodel = Patch.Monkeypatch(model);
        var expected = model.Parameters().ToList();
        Check.Same(expected, parameters, "GetFuncParams");
        Check.Same(expected, fmodel.Parameters(), "fmodel.Parameters()");
        Assert.All(parameters.Zip(expected), p => Assert.NotSame(p.Second, p.First));
        Assert.All(parameters, p => Assert.True(p.IsLeaf && p.RequiresGrad));
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Forward_EqualsTheModules(string name)
    {
        var g = new Generator(4);
        var model = TestModels.Build(name, g);
        var fmodel = Patch.Monkeypatch(model);
        for (int i = 0; i < 10; i++)
        {
            var inputs = TestModels.Rand(g, 8, 4);
            Check.Same(model.Forward(inputs), fmodel.Forward(inputs), $"forward {i}");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Backward_GradientsEqualTheModules(string name)
    {
        var g = new Generator(5);
        var model = TestModels.Build(name, g);
        var fmodel = Patch.Monkeypatch(model);
        for (int i = 0; i < 10; i++)
        {
            var inputs = TestModels.Rand(g, 8, 4);
            Loss(model.Forward(inputs)).Backward();
            Loss(fmodel.Forward(inputs)).Backward();
            foreach (var (truth, got) in model.Parameters().Zip(fmodel.Parameters()))
            {
                if (truth.Grad is null)
                {
                    Assert.Null(got.Grad);
                }
                else
                {
                    Check.Close(truth.Grad, got.Grad, 1e-13, $"gradient after {i + 1} backward passes");
                }
            }
        }
    }

    /// <summary>
    /// higher's testUnrollSGD and testCtxManager, joined: 10 SGD steps written by hand through
    /// FastParams and 10 steps of the inner-loop context on the same batches give the same fast
    /// weights, and the same (non-null) meta-gradients w.r.t. the used time-0 parameters.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void ManualUnroll_EqualsInnerLoopContext(string name)
    {
        var g = new Generator(6);
        var model = TestModels.Build(name, g);
        var mask = UsedMask(model, TestModels.Rand(g, 8, 4));
        var batches = Enumerable.Range(0, 11).Select(_ => TestModels.Rand(g, 8, 4)).ToArray();

        var manual = Patch.Monkeypatch(model);
        for (int i = 0; i < 10; i++)
        {
            var loss = Loss(manual.Forward(batches[i]));
            var current = manual.Parameters();
            var grads = Autograd.Grad([loss], current, createGraph: true, allowUnused: true);
            manual.FastParams = current.Zip(grads, (p, grad) => grad is null ? p : p - Lr * grad).ToList();
        }
        var manualLoss = Loss(manual.Forward(batches[10]));
        var manualUsed = manual.Parameters(0).Where((_, i) => mask[i]).ToList();
        var manualGrads = Autograd.Grad([manualLoss], manualUsed);
        Assert.Equal(11, manual.HistoryLength);

        using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = Lr }));
        var (fmodel, diffopt) = ctx;
        for (int i = 0; i < 10; i++)
        {
            diffopt.Step(Loss(fmodel.Forward(batches[i])));
        }
        var ctxLoss = Loss(fmodel.Forward(batches[10]));
        var ctxGrads = Autograd.Grad([ctxLoss], fmodel.Parameters(0).Where((_, i) => mask[i]).ToList());

        Check.Close(manual.Parameters(), fmodel.Parameters(), 1e-13, "fast weights");
        Assert.All(ctxGrads, grad => Assert.NotNull(grad));
        Check.Close(manualGrads.Select(t => t!).ToList(), ctxGrads, 1e-12, "meta-gradients");
    }

    /// <summary>
    /// higher's testMiniMAML: with copyInitialWeights false the outer backward fills the model's
    /// Grad, equal to the gradient w.r.t. fmodel.Parameters(0) (which are the model's parameters).
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void MiniMaml_ModelGradEqualsGradientAtTimeZero(string name)
    {
        var g = new Generator(7);
        var model = TestModels.Build(name, g);
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = Lr });
        using var ctx = InnerLoop.Create(model, opt, copyInitialWeights: false);
        var (fmodel, diffopt) = ctx;
        for (int i = 0; i < 10; i++)
        {
            diffopt.Step(Loss(fmodel.Forward(TestModels.Rand(g, 8, 4))));
        }
        var paramSum = fmodel.Parameters().Select(p => p.Sum()).Aggregate((a, b) => a + b);
        var time0 = fmodel.Parameters(0);
        Assert.All(time0.Zip(model.Parameters()), p => Assert.Same(p.Second, p.First));
        var finalGrads = Autograd.Grad([paramSum], time0, retainGraph: true);
        paramSum.Backward();
        foreach (var (p, grad) in model.Parameters().Zip(finalGrads))
        {
            Check.Close(grad!, p.Grad, 1e-14, "model Grad vs gradient at time 0");
        }
    }

    /// <summary>
    /// higher's testMiniMAMLTestTime: with tracking off (copyInitialWeights false) nothing reaches the
    /// model: no gradient w.r.t. the initial weights, no Grad on the model. The fast weights are
    /// leaves without graphs and only times 0 and -1 exist.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void MiniMamlTestTime_NoGradientsReachTheModel(string name)
    {
        var g = new Generator(8);
        var model = TestModels.Build(name, g);
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = Lr });
        using var ctx = InnerLoop.Create(model, opt, copyInitialWeights: false, trackHigherGrads: false);
        var (fmodel, diffopt) = ctx;
        var initParams = fmodel.Parameters(0);
        for (int i = 0; i < 10; i++)
        {
            diffopt.Step(Loss(fmodel.Forward(TestModels.Rand(g, 8, 4))));
            Assert.All(fmodel.Parameters(), p => Assert.True(p.IsLeaf && p.RequiresGrad, "test-time fast weights are leaves that require grad"));
            Assert.Equal(1, fmodel.HistoryLength);
        }
        Assert.Same(fmodel.Parameters(-1), fmodel.Parameters(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => fmodel.Parameters(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => fmodel.Parameters(-2));

        var paramSum = fmodel.Parameters().Select(p => p.Sum()).Aggregate((a, b) => a + b);
        var finalGrads = Autograd.Grad([paramSum], initParams, allowUnused: true, retainGraph: true);
        paramSum.Backward();
        foreach (var (p, grad) in model.Parameters().Zip(finalGrads))
        {
            Assert.Null(p.Grad);
            Assert.Null(grad);
        }
    }

    /// <summary>higher's testSubModuleDirectCall: a submodule called directly inside a functional call gives the patched module's result.</summary>
    [Fact]
    public void SubmoduleDirectCall_EqualsPatchedForward()
    {
        var module = new NestedEncoder(new Linear(3, 4, generator: new Generator(9)));
        var fmodule = Patch.Monkeypatch(module);
        var xs = Tensor.Randn([2, 3], generator: new Generator(10));
        Check.Same(fmodule.Forward(xs), fmodule.Call(m => ((NestedEncoder)m).Inner.Forward(xs)), "direct submodule call");
    }

    public static TheoryData<string> RecurrentKinds => new("rnn", "lstm", "gru");

    private static (Module Module, Func<Module, Tensor, (Tensor Output, Tensor[] State)> Run) Recurrent(string kind, Generator g)
    {
        const int feats = 10, hidden = 20, layers = 2;
        Module m = kind switch
        {
            "rnn" => new Rnn(feats, hidden, layers, generator: g),
            "lstm" => new Lstm(feats, hidden, layers, generator: g),
            _ => new Gru(feats, hidden, layers, generator: g),
        };
        m.To(DType.Float64);
        return (m, RunRecurrent);
    }

    private static (Tensor Output, Tensor[] State) RunRecurrent(Module module, Tensor x)
    {
        switch (module)
        {
            case Rnn r:
                {
                    var (o, h) = r.Forward(x, null);
                    return (o, [h]);
                }
            case Lstm l:
                {
                    var (o, h, c) = l.Forward(x, null, null);
                    return (o, [h, c]);
                }
            case Gru r:
                {
                    var (o, h) = r.Forward(x, null);
                    return (o, [h]);
                }
            default:
                throw new ArgumentException($"Not a recurrent layer: {module.GetType().Name}.", nameof(module));
        }
    }

    private static Tensor[] StepCell(Module module, Tensor x, Tensor[]? state)
    {
        switch (module)
        {
            case RnnCell c:
                return [c.Forward(x, state?[0])];
            case LstmCell c:
                {
                    var (h, cc) = c.Forward(x, state?[0], state?[1]);
                    return [h, cc];
                }
            case GruCell c:
                return [c.Forward(x, state?[0])];
            default:
                throw new ArgumentException($"Not a recurrent cell: {module.GetType().Name}.", nameof(module));
        }
    }

    /// <summary>higher's testRNNForward: RNN, LSTM and GRU (2 layers) give the module's outputs and states through the functional view.</summary>
    [Theory]
    [MemberData(nameof(RecurrentKinds))]
    public void RecurrentForward_EqualsTheModules(string kind)
    {
        var g = new Generator(21);
        for (int i = 0; i < 3; i++)
        {
            var (rnn, run) = Recurrent(kind, g);
            var frnn = Patch.Monkeypatch(rnn);
            var inputs = Tensor.Randn([5, 3, 10], DType.Float64, g);
            var (output, state) = run(rnn, inputs);
            var (foutput, fstate) = frnn.Call(m => run(m, inputs));
            Check.Same(output, foutput, "output");
            Check.Same(state, fstate, "state");
        }
    }

    /// <summary>higher's testRNNUnrollSGD: one SGD step through the functional view; the final loss reaches every time-0 weight.</summary>
    [Theory]
    [MemberData(nameof(RecurrentKinds))]
    public void RecurrentUnrollSgd_ReachesEveryInitialWeight(string kind)
    {
        var g = new Generator(22);
        var (rnn, run) = Recurrent(kind, g);
        var frnn = Patch.Monkeypatch(rnn);
        var (outputs, _) = frnn.Call(m => run(m, Tensor.Randn([5, 3, 10], DType.Float64, g)));
        var loss = outputs.Select(0, 4).Sum().Square();
        var current = frnn.Parameters();
        var grads = Autograd.Grad([loss], current, createGraph: true, allowUnused: true);
        frnn.FastParams = current.Zip(grads, (p, grad) => grad is null ? p : p - Lr * grad).ToList();
        var (finalOutputs, _) = frnn.Call(m => run(m, Tensor.Randn([5, 3, 10], DType.Float64, g)));
        var finalGrads = Autograd.Grad([finalOutputs.Sum().Square()], frnn.Parameters(0));
        Assert.All(finalGrads, grad => Assert.NotNull(grad));
    }

    public static TheoryData<string> CellKinds => new("rnn", "lstm", "gru");

    /// <summary>higher's testRNNCellForward and testRNNCellUnrollSGD: cells stepped through a sequence, via the functional view and directly.</summary>
    [Theory]
    [MemberData(nameof(CellKinds))]
    public void RecurrentCells_ForwardEqualAndUnrollReachesInitialWeights(string kind)
    {
        var g = new Generator(23);
        Module cell = kind switch
        {
            "rnn" => new RnnCell(10, 20, generator: g),
            "lstm" => new LstmCell(10, 20, generator: g),
            _ => new GruCell(10, 20, generator: g),
        };
        cell.To(DType.Float64);
        var fcell = Patch.Monkeypatch(cell);
        Tensor[]? state = null, fstate = null;
        for (int t = 0; t < 5; t++)
        {
            var inputs = Tensor.Randn([3, 10], DType.Float64, g);
            state = StepCell(cell, inputs, state);
            var previous = fstate;
            fstate = fcell.Call(m => StepCell(m, inputs, previous));
            Check.Same(state, fstate, $"state at t = {t}");
        }

        var loss = fstate![0].Sum().Square();
        var current = fcell.Parameters();
        var grads = Autograd.Grad([loss], current, createGraph: true, allowUnused: true);
        fcell.FastParams = current.Zip(grads, (p, grad) => grad is null ? p : p - Lr * grad).ToList();
        var last = fstate;
        var final = fcell.Call(m => StepCell(m, Tensor.Randn([3, 10], DType.Float64, g), last));
        var finalGrads = Autograd.Grad([final[0].Sum().Square()], fcell.Parameters(0));
        Assert.All(finalGrads, grad => Assert.NotNull(grad));
    }
}
