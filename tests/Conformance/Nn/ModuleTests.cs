using Higher.Nn;

namespace Higher.Conformance.Nn;

/// <summary>
/// Module behaviour beyond the torch fixtures: state dictionaries (round trips and strict-load
/// errors), weight tying, train/eval modes, default initialization, functional binding of every
/// layer's parameters, and the failure twins of bad shapes and arguments.
/// </summary>
public sealed class ModuleTests
{
    private static Tensor Randn(ulong seed, params int[] shape) => Tensor.Randn(new Shape(shape), DType.Float64, new Generator(seed));

    private static Sequential SmallNet(ulong seed)
    {
        var g = new Generator(seed);
        var net = new Sequential(new Linear(3, 4, generator: g), new BatchNorm1d(4), new Tanh(), new Linear(4, 2, generator: g));
        net.To(DType.Float64);
        return net;
    }

    [Fact]
    public void StateDict_HasTorchNames_InRegistrationOrder()
    {
        var net = SmallNet(1);
        Assert.Equal(
            ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"],
            net.StateDict().Keys);
        Assert.Equal(["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"], net.NamedParameters().Select(p => p.Name));
        Assert.Equal(DType.Int64, net.StateDict()["1.num_batches_tracked"].DType);
    }

    [Fact]
    public void StateDict_RoundTrip_ReproducesOutputsAndBuffers()
    {
        var source = SmallNet(1);
        source.Forward(Randn(5, 6, 3));
        var target = SmallNet(2);
        var x = Randn(6, 6, 3);
        Assert.NotEqual(source.Eval().Forward(x).ToDoubleArray(), target.Eval().Forward(x).ToDoubleArray());
        target.LoadStateDict(source.StateDict());
        Assert.Equal(source.Forward(x).ToDoubleArray(), target.Forward(x).ToDoubleArray());
        Assert.Equal(1, target.StateDict()["1.num_batches_tracked"].Item());
    }

    [Fact]
    public void StateDict_IsACopy()
    {
        var net = SmallNet(1);
        var state = net.StateDict();
        using (Autograd.NoGrad())
        {
            state["0.weight"].FillInPlace(7);
        }
        Assert.DoesNotContain(7.0, net.NamedParameters().First().Value.ToDoubleArray());
    }

    [Fact]
    public void LoadStateDict_MissingKey_ThrowsNamingIt_AndChangesNothing()
    {
        var net = SmallNet(1);
        var before = net.StateDict();
        var state = SmallNet(2).StateDict();
        state.Remove("3.bias");
        var e = Assert.Throws<ArgumentException>(() => net.LoadStateDict(state));
        Assert.Contains("missing keys [3.bias]", e.Message, StringComparison.Ordinal);
        Assert.Equal(before["0.weight"].ToDoubleArray(), net.StateDict()["0.weight"].ToDoubleArray());
    }

    [Fact]
    public void LoadStateDict_UnexpectedKey_ThrowsNamingIt()
    {
        var net = SmallNet(1);
        var state = SmallNet(2).StateDict();
        state["4.weight"] = Tensor.Zeros([1], DType.Float64);
        var e = Assert.Throws<ArgumentException>(() => net.LoadStateDict(state));
        Assert.Contains("unexpected keys [4.weight]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadStateDict_ShapeMismatch_ThrowsNamingKeyAndBothShapes()
    {
        var net = SmallNet(1);
        var state = SmallNet(2).StateDict();
        state["3.weight"] = Tensor.Zeros([3, 4], DType.Float64);
        var e = Assert.Throws<ArgumentException>(() => net.LoadStateDict(state));
        Assert.Contains("'3.weight'", e.Message, StringComparison.Ordinal);
        Assert.Contains("[3, 4]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[2, 4]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadStateDict_NonStrict_IgnoresMissingAndUnexpectedKeys()
    {
        var net = SmallNet(1);
        var other = SmallNet(2);
        var state = other.StateDict();
        state.Remove("3.bias");
        state["extra"] = Tensor.Zeros([1], DType.Float64);
        var biasBefore = net.StateDict()["3.bias"].ToDoubleArray();
        net.LoadStateDict(state, strict: false);
        Assert.Equal(other.StateDict()["0.weight"].ToDoubleArray(), net.StateDict()["0.weight"].ToDoubleArray());
        Assert.Equal(biasBefore, net.StateDict()["3.bias"].ToDoubleArray());
    }

    [Fact]
    public void RecurrentLayers_NameParametersAsTorch()
    {
        var lstm = new Lstm(3, 4, numLayers: 2, bidirectional: true);
        string[] expected =
        [
            "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
            "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
            "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse",
        ];
        Assert.Equal(expected, lstm.NamedParameters().Select(p => p.Name));
        var shapes = lstm.NamedParameters().ToDictionary(p => p.Name, p => p.Value.Shape);
        Assert.Equal(new Shape(16, 3), shapes["weight_ih_l0"]);
        Assert.Equal(new Shape(16, 8), shapes["weight_ih_l1"]);
        Assert.Equal(new Shape(16, 4), shapes["weight_hh_l1_reverse"]);
        Assert.Equal(["weight_ih", "weight_hh"], new GruCell(2, 3, bias: false).NamedParameters().Select(p => p.Name));
        Assert.Equal(new Shape(9, 2), new GruCell(2, 3).NamedParameters().First().Value.Shape);
    }

    [Fact]
    public void WeightTying_SharedParameterAppearsOnce_AndCollectsBothGradients()
    {
        var g = new Generator(3);
        var first = new Linear(3, 3, generator: g);
        var second = new Linear(3, 3, generator: g);
        var net = new Sequential(first, new Tanh(), second);
        net.To(DType.Float64);
        var untied = new Sequential(new Linear(3, 3), new Tanh(), new Linear(3, 3));
        untied.To(DType.Float64);
        second.SetParameter("weight", first.Weight);
        var state = net.StateDict();
        untied.LoadStateDict(state);

        Assert.Same(first.Weight, second.Weight);
        Assert.Equal(["0.weight", "0.bias", "2.bias"], net.NamedParameters().Select(p => p.Name));
        Assert.Equal(3, net.Parameters().Count);
        Assert.Equal(4, state.Count);

        var x = Randn(4, 5, 3);
        net.Forward(x).Square().Sum().Backward();
        untied.Forward(x).Square().Sum().Backward();
        var untiedWeights = untied.NamedParameters().ToDictionary(p => p.Name, p => p.Value);
        var expected = (untiedWeights["0.weight"].Grad! + untiedWeights["2.weight"].Grad!).ToDoubleArray();
        var actual = first.Weight.Grad!.ToDoubleArray();
        Engine.Numeric.AssertClose(expected, actual, 1e-14, "tied weight gradient");
    }

    [Fact]
    public void Parameters_AreNamedParameterHandles_InOrder_WithSharedModulesAndTiedWeights()
    {
        // Parameters() walks the tree without names; it must list what NamedParameterHandles lists, in
        // its order: a module registered twice, a weight tied across layers and an absent bias included.
        var g = new Generator(5);
        var shared = new Linear(3, 3, generator: g);
        var tied = new Linear(3, 3, bias: false, generator: g);
        var inner = new Sequential(new Linear(3, 3, generator: g), shared);
        var net = new Sequential(inner, new Tanh(), shared, tied, new Sequential(new Linear(3, 2, generator: g), inner));
        tied.SetParameter("weight", inner.Children().OfType<Linear>().First().Weight);

        var expected = net.NamedParameterHandles().Select(h => h.Parameter.Data).ToArray();
        var actual = net.Parameters();
        Assert.Equal(expected.Length, actual.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Same(expected[i], actual[i]);
        }
        Assert.Equal(["0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias", "4.0.weight", "4.0.bias"], net.NamedParameterHandles().Select(h => h.Name));
    }

    [Fact]
    public void Parameters_FollowsEveryChange_AfterItWasRead()
    {
        // Parameters() reuses its list until some module's parameters change: each kind of change shows at once.
        var g = new Generator(12);
        var first = new Linear(3, 3, generator: g);
        var second = new Linear(3, 3, generator: g);
        var net = new Sequential(first, new Tanh(), second);
        var before = net.Parameters();
        Assert.Equal(4, before.Count);
        Assert.Same(before[0], net.Parameters()[0]);

        second.SetParameter("weight", first.Weight);                 // tying: the shared handle counts once
        Assert.Equal(3, net.Parameters().Count);

        net.To(DType.Float64);                                       // Parameter.Data replaced
        var moved = net.Parameters();
        Assert.All(moved, t => Assert.Equal(DType.Float64, t.DType));
        Assert.NotSame(before[0], moved[0]);

        first.Weight.Data = Tensor.Zeros([3, 3], DType.Float64);     // one tensor assigned by hand
        Assert.Same(first.Weight.Data, net.Parameters()[0]);

        var extra = new Linear(3, 2, generator: g);                  // a module made earlier, registered later
        Assert.Equal(3, net.Parameters().Count);
        net.Add(extra);
        Assert.Equal(5, net.Parameters().Count);

        // The list handed out again is read-only: no caller can change what the next one gets.
        var list = net.Parameters();
        Assert.Throws<NotSupportedException>(() => ((IList<Tensor>)list)[0] = Tensor.Ones([1]));
        Assert.Same(first.Weight.Data, net.Parameters()[0]);
    }

    private sealed class WithBuffer : Module
    {
        public WithBuffer() => Stat = RegisterBuffer("stat", Tensor.Zeros([2], DType.Float64));

        public ModuleBuffer Stat { get; }

        public override Tensor Forward(Tensor input) => input;
    }

    [Fact]
    public void NamedHandles_FollowEveryChange_AfterTheyWereRead()
    {
        var inner = new WithBuffer();
        var net = new Sequential(inner, new Linear(2, 2, generator: new Generator(13)));
        Assert.Equal(["0.stat"], net.NamedBufferHandles().Select(b => b.Name));
        Assert.Equal(["1.weight", "1.bias"], net.NamedParameterHandles().Select(h => h.Name));

        inner.Stat.Data = null;                                      // absent buffers are not listed
        Assert.Empty(net.NamedBufferHandles());
        inner.Stat.Value = Tensor.Ones([2], DType.Float64);          // present again (through Value)
        Assert.Equal(["0.stat"], net.NamedBufferHandles().Select(b => b.Name));
        inner.Stat.Data = Tensor.Zeros([2], DType.Float64);          // replaced, still present: the same handle
        Assert.Same(inner.Stat, net.NamedBufferHandles()[0].Buffer);

        var later = new Linear(2, 2, bias: false, generator: new Generator(14));
        Assert.Equal(2, net.NamedParameterHandles().Count);
        net.Add(later);
        Assert.Equal(["1.weight", "1.bias", "2.weight"], net.NamedParameterHandles().Select(h => h.Name));
        Assert.Throws<NotSupportedException>(() => ((IList<(string, Parameter)>)net.NamedParameterHandles()).Clear());
    }

    [Fact]
    public void SetParameter_UnknownName_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => new Linear(2, 2).SetParameter("kernel", null));
        Assert.Contains("'kernel'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dropout_EvalIsIdentity_TrainZeroesAndScales()
    {
        var x = Tensor.Ones([200, 50], DType.Float64);
        var dropout = new Dropout(0.3, new Generator(5));
        dropout.Eval();
        Assert.Same(x, dropout.Forward(x));
        dropout.Train();
        var y = dropout.Forward(x).ToDoubleArray();
        Assert.All(y, v => Assert.True(v == 0 || Math.Abs(v - 1 / 0.7) < 1e-15, $"value {v}"));
        double zeroFraction = y.Count(v => v == 0) / (double)y.Length;
        Assert.InRange(zeroFraction, 0.27, 0.33);
    }

    [Fact]
    public void Dropout_SameSeed_SameMask_AndGradientFollowsTheMask()
    {
        var x = Randn(1, 8, 8).WithRequiresGrad();
        var a = new Dropout(0.5, new Generator(9)).Forward(x);
        var b = new Dropout(0.5, new Generator(9)).Forward(x);
        Assert.Equal(a.ToDoubleArray(), b.ToDoubleArray());
        var grad = Autograd.Grad(a.Sum(), x).ToDoubleArray();
        var values = a.ToDoubleArray();
        for (int i = 0; i < grad.Length; i++)
        {
            Assert.Equal(values[i] == 0 ? 0 : 2, grad[i]);
        }
    }

    [Fact]
    public void Dropout_ExtremeProbabilities()
    {
        var x = Randn(2, 4, 4);
        Assert.Equal(x.ToDoubleArray(), new Dropout(0).Forward(x).ToDoubleArray());
        Assert.All(new Dropout(1).Forward(x).ToDoubleArray(), v => Assert.Equal(0, v));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(-0.1));
    }

    [Fact]
    public void BatchNorm_TrainUpdatesRunningStats_EvalUsesThem()
    {
        var bn = new BatchNorm1d(3);
        bn.To(DType.Float64);
        var x = Randn(11, 8, 3) * 2 + 1;
        bn.Forward(x);
        var mean = x.Mean(0).ToDoubleArray();
        var unbiased = x.Var([0]).ToDoubleArray();
        Engine.Numeric.AssertClose(mean.Select(m => 0.1 * m).ToArray(), bn.RunningMean.Data!.ToDoubleArray(), 1e-14, "running mean");
        Engine.Numeric.AssertClose(unbiased.Select(v => 0.9 + 0.1 * v).ToArray(), bn.RunningVar.Data!.ToDoubleArray(), 1e-14, "running var");
        Assert.Equal(1, bn.NumBatchesTracked.Data!.Item());

        bn.Eval();
        var rm = bn.RunningMean.Data!;
        var rv = bn.RunningVar.Data!;
        var y = bn.Forward(x);
        var expected = (x - rm) / (rv + 1e-5).Sqrt();
        Engine.Numeric.AssertClose(expected.ToDoubleArray(), y.ToDoubleArray(), 1e-14, "eval output");
        Assert.Same(rm, bn.RunningMean.Data);
        Assert.Equal(1, bn.NumBatchesTracked.Data!.Item());
    }

    [Fact]
    public void BatchNorm_CumulativeAverage_WhenMomentumIsNull()
    {
        var bn = new BatchNorm1d(2, momentum: null);
        bn.To(DType.Float64);
        var batches = new[] { Randn(1, 5, 2), Randn(2, 5, 2) + 3, Randn(3, 5, 2) - 1 };
        foreach (var b in batches)
        {
            bn.Forward(b);
        }
        var expected = Tensor.Stack(batches.Select(b => b.Mean(0)).ToList()).Mean(0).ToDoubleArray();
        Engine.Numeric.AssertClose(expected, bn.RunningMean.Data!.ToDoubleArray(), 1e-14, "cumulative running mean");
        Assert.Equal(3, bn.NumBatchesTracked.Data!.Item());
    }

    [Fact]
    public void BatchNorm_WithoutTracking_HasNoBuffers_AndAlwaysUsesTheBatch()
    {
        var bn = new BatchNorm1d(2, trackRunningStats: false, affine: false);
        bn.To(DType.Float64);
        Assert.Empty(bn.StateDict());
        var x = Randn(4, 6, 2);
        var train = bn.Forward(x).ToDoubleArray();
        var eval = ((BatchNorm1d)bn.Eval()).Forward(x).ToDoubleArray();
        Assert.Equal(train, eval);
    }

    [Fact]
    public void BatchNorm_OneValuePerChannel_ThrowsInTraining()
    {
        var bn = new BatchNorm1d(3);
        var e = Assert.Throws<ArgumentException>(() => bn.Forward(Tensor.Ones([1, 3])));
        Assert.Contains("more than 1 value per channel", e.Message, StringComparison.Ordinal);
        bn.Eval();
        Assert.Equal(new Shape(1, 3), bn.Forward(Tensor.Ones([1, 3])).Shape);
    }

    [Fact]
    public void DefaultInitialization_FollowsTorchBounds_AndIsSeeded()
    {
        var linear = new Linear(16, 8, generator: new Generator(1));
        Assert.All(linear.Weight.Data.ToDoubleArray(), v => Assert.InRange(Math.Abs(v), 0, 0.25));
        Assert.All(linear.Bias!.Data.ToDoubleArray(), v => Assert.InRange(Math.Abs(v), 0, 0.25));
        Assert.True(linear.Weight.Data.ToDoubleArray().Max(Math.Abs) > 0.2, "kaiming_uniform(a=√5) should fill most of U(-1/4, 1/4)");
        Assert.Equal(linear.Weight.Data.ToDoubleArray(), new Linear(16, 8, generator: new Generator(1)).Weight.Data.ToDoubleArray());

        var gru = new Gru(5, 25, generator: new Generator(2));
        Assert.All(gru.Parameters().SelectMany(p => p.ToDoubleArray()), v => Assert.InRange(Math.Abs(v), 0, 0.2));

        var embedding = new Embedding(100, 50, generator: new Generator(3)).Weight.Data.ToDoubleArray();
        Assert.InRange(embedding.Average(), -0.05, 0.05);
        Assert.InRange(Math.Sqrt(embedding.Select(v => v * v).Average()), 0.95, 1.05);

        var norm = new LayerNorm(4);
        Assert.All(norm.Weight!.Data.ToDoubleArray(), v => Assert.Equal(1, v));
        Assert.All(norm.Bias!.Data.ToDoubleArray(), v => Assert.Equal(0, v));
    }

    [Fact]
    public void Embedding_PaddingRow_StartsAtZero_AndGetsNoGradient()
    {
        var embedding = new Embedding(5, 3, paddingIdx: -1);
        Assert.Equal(4, embedding.PaddingIdx);
        Assert.All(embedding.Weight.Data.Select(0, 4).ToDoubleArray(), v => Assert.Equal(0, v));
        var y = embedding.Forward(Tensor.FromArray([4L, 1, 4], new Shape(3)));
        Assert.Equal(new Shape(3, 3), y.Shape);
        var grad = Autograd.Grad(y.Sum(), embedding.Weight.Data);
        Assert.All(grad.Select(0, 4).ToDoubleArray(), v => Assert.Equal(0, v));
        Assert.All(grad.Select(0, 1).ToDoubleArray(), v => Assert.Equal(1, v));
    }

    /// <summary>Layers with parameters, each with an input, for the binding test.</summary>
    public static TheoryData<string> BindableLayers => new("linear", "layer_norm", "batch_norm", "embedding", "rnn", "gru", "lstm", "rnn_cell", "gru_cell", "lstm_cell", "sequential");

    private static (Module Module, Func<Module, Tensor> Run) Bindable(string kind)
    {
        var x = Randn(8, 5, 2, 3);
        return kind switch
        {
            "linear" => (new Linear(3, 4), m => m.Forward(x)),
            "layer_norm" => (new LayerNorm(3), m => m.Forward(x)),
            "batch_norm" => (new BatchNorm1d(2), m => m.Forward(x)),
            "embedding" => (new Embedding(6, 3), m => m.Forward(Tensor.FromArray([1L, 5, 2], new Shape(3))).To(DType.Float64)),
            "rnn" => (new Rnn(3, 4, numLayers: 2, bidirectional: true), m => m.Forward(x)),
            "gru" => (new Gru(3, 4, batchFirst: true), m => m.Forward(x)),
            "lstm" => (new Lstm(3, 4, numLayers: 2), m => ((Lstm)m).Forward(x, null, null).CN),
            "rnn_cell" => (new RnnCell(3, 4), m => m.Forward(x.Select(0, 0))),
            "gru_cell" => (new GruCell(3, 4), m => m.Forward(x.Select(0, 0))),
            "lstm_cell" => (new LstmCell(3, 4), m => ((LstmCell)m).Forward(x.Select(0, 0), null, null).C),
            _ => (new Sequential(new Linear(3, 4), new Relu(), new Linear(4, 2)), m => m.Forward(x)),
        };
    }

    [Theory]
    [MemberData(nameof(BindableLayers))]
    public void EveryLayer_ReadsItsWeightsThroughTheBinding(string kind)
    {
        // Running with bound weights must equal running a copy that holds those weights, and must
        // leave the module's own weights alone: the indirection functional calls rely on.
        var (module, run) = Bindable(kind);
        module.To(DType.Float64);
        var (copy, _) = Bindable(kind);
        copy.To(DType.Float64);
        var handles = module.NamedParameterHandles();
        var replacement = new Dictionary<Parameter, Tensor>();
        var state = new Dictionary<string, Tensor>(module.StateDict());
        ulong seed = 100;
        foreach (var (name, p) in handles)
        {
            var value = Tensor.Randn(p.Shape, DType.Float64, new Generator(seed++));
            replacement[p] = value;
            state[name] = value;
        }
        copy.LoadStateDict(state);
        var before = module.StateDict();
        var buffers = module.NamedBufferHandles().ToDictionary(b => b.Buffer, b => (Tensor?)b.Buffer.Data!.Clone());
        Tensor bound;
        using (Binding.Bind(replacement, buffers))
        {
            bound = run(module);
        }
        Assert.Equal(run(copy).ToDoubleArray(), bound.ToDoubleArray());
        foreach (var (name, value) in module.StateDict())
        {
            Assert.Equal(before[name].ToDoubleArray(), value.ToDoubleArray());
        }
        var copyBuffers = copy.NamedBuffers().ToDictionary(b => b.Name, b => b.Value);
        foreach (var (name, handle) in module.NamedBufferHandles())
        {
            Assert.Equal(copyBuffers[name].ToDoubleArray(), buffers[handle]!.ToDoubleArray());
        }
    }

    [Fact]
    public void Containers_IndexAndName()
    {
        var seq = new Sequential(new Linear(2, 3), new Relu());
        seq.Add(new Linear(3, 1));
        Assert.Equal(3, seq.Count);
        Assert.IsType<Linear>(seq[-1]);
        Assert.Equal(["0", "1", "2"], seq.NamedChildren().Select(c => c.Name));
        var list = new ModuleList(new Tanh()).AddRange([new Linear(1, 1), new Linear(1, 1)]);
        Assert.Equal(3, list.Count);
        Assert.Equal(["1.weight", "1.bias", "2.weight", "2.bias"], list.NamedParameters().Select(p => p.Name));
        Assert.Throws<NotSupportedException>(() => list.Forward(Tensor.Ones([1])));
        Assert.Equal(new Shape(4, 1), seq.Forward(Tensor.Ones([4, 2])).Shape);
    }

    [Fact]
    public void Flatten_And_Identity()
    {
        var x = Randn(1, 2, 3, 4);
        Assert.Equal(new Shape(2, 12), new Flatten().Forward(x).Shape);
        Assert.Equal(new Shape(6, 4), new Flatten(0, 1).Forward(x).Shape);
        Assert.Same(x, new Identity().Forward(x));
    }

    [Fact]
    public void Init_Helpers()
    {
        var w = Tensor.Zeros([30, 20], DType.Float64);
        Init.XavierUniform(w, gain: 2, generator: new Generator(1));
        double bound = 2 * Math.Sqrt(6.0 / 50);
        Assert.All(w.ToDoubleArray(), v => Assert.InRange(Math.Abs(v), 0, bound));
        Assert.True(w.ToDoubleArray().Max(Math.Abs) > 0.9 * bound);
        Init.KaimingUniform(w, mode: FanMode.FanOut, nonlinearity: Nonlinearity.Relu, generator: new Generator(2));
        Assert.All(w.ToDoubleArray(), v => Assert.InRange(Math.Abs(v), 0, Math.Sqrt(2.0) * Math.Sqrt(3.0 / 30)));
        Init.KaimingNormal(w, generator: new Generator(3));
        Init.XavierNormal(w, generator: new Generator(4));
        Init.Normal(w, 3, 0.01, new Generator(5));
        Assert.InRange(w.Mean().Item(), 2.99, 3.01);
        Init.Uniform(w, 1, 2, new Generator(6));
        Assert.All(w.ToDoubleArray(), v => Assert.InRange(v, 1, 2));
        Init.Constant(w, 0.5);
        Assert.All(w.ToDoubleArray(), v => Assert.Equal(0.5, v));
        Init.Zeros(w);
        Init.Ones(w);
        Assert.All(w.ToDoubleArray(), v => Assert.Equal(1, v));
        Assert.Equal((4 * 9, 8 * 9), Init.CalculateFanInAndFanOut(Tensor.Zeros([8, 4, 3, 3])));
        Assert.Equal(5.0 / 3, Init.CalculateGain(Nonlinearity.Tanh));
        Assert.Equal(Math.Sqrt(2.0 / (1 + 0.04)), Init.CalculateGain(Nonlinearity.LeakyRelu, 0.2), 15);

        var p = new Linear(3, 3).Weight;
        Init.Ones(p.Data);
        Assert.True(p.Data.IsLeaf && p.Data.RequiresGrad);
    }

    [Fact]
    public void Init_FanOfAVector_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => Init.XavierUniform(Tensor.Zeros([5])));
        Assert.Contains("[5]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadInputs_ThrowNamingShapes()
    {
        Assert.Contains("[2, 5]", Assert.Throws<ArgumentException>(() => new Linear(3, 2).Forward(Tensor.Ones([2, 5]))).Message, StringComparison.Ordinal);
        Assert.Contains("[2, 5]", Assert.Throws<ArgumentException>(() => new LayerNorm(4).Forward(Tensor.Ones([2, 5]))).Message, StringComparison.Ordinal);
        Assert.Contains("[2, 5, 1, 1]", Assert.Throws<ArgumentException>(() => new BatchNorm1d(5).Forward(Tensor.Ones([2, 5, 1, 1]))).Message, StringComparison.Ordinal);
        Assert.Contains("[4, 2, 7]", Assert.Throws<ArgumentException>(() => new Lstm(3, 4).Forward(Tensor.Ones([4, 2, 7]))).Message, StringComparison.Ordinal);
        var h0 = Assert.Throws<ArgumentException>(() => new Gru(3, 4, numLayers: 2).Forward(Tensor.Ones([5, 2, 3]), Tensor.Zeros([1, 2, 4])));
        Assert.Contains("[2, 2, 4]", h0.Message, StringComparison.Ordinal);
        Assert.Contains("[1, 2, 4]", h0.Message, StringComparison.Ordinal);
        Assert.Contains("[2, 9]", Assert.Throws<ArgumentException>(() => new GruCell(3, 4).Forward(Tensor.Ones([2, 9]))).Message, StringComparison.Ordinal);
        Assert.Contains("int64", Assert.Throws<ArgumentException>(() => new Embedding(3, 2).Forward(Tensor.Ones([2]))).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Linear(-1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Rnn(3, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Lstm(3, 4, dropout: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Embedding(3, 2, paddingIdx: 3));
        Assert.Throws<ArgumentException>(() => new LayerNorm([]));
    }

    [Fact]
    public void Recurrent_UnbatchedAndBatchFirst_AgreeWithTheBatchedLayout()
    {
        var lstm = new Lstm(3, 4, numLayers: 2, generator: new Generator(4));
        lstm.To(DType.Float64);
        var x = Randn(7, 5, 2, 3);
        var (output, h, c) = lstm.Forward(x, null, null);
        var (single, hs, cs) = lstm.Forward(x.Select(1, 1), null, null);
        Engine.Numeric.AssertClose(output.Select(1, 1).ToDoubleArray(), single.ToDoubleArray(), 1e-15, "unbatched output");
        Engine.Numeric.AssertClose(h.Select(1, 1).ToDoubleArray(), hs.ToDoubleArray(), 1e-15, "unbatched h_n");
        Engine.Numeric.AssertClose(c.Select(1, 1).ToDoubleArray(), cs.ToDoubleArray(), 1e-15, "unbatched c_n");

        var batchFirst = new Lstm(3, 4, numLayers: 2, batchFirst: true);
        batchFirst.To(DType.Float64);
        batchFirst.LoadStateDict(lstm.StateDict());
        var (bf, _, _) = batchFirst.Forward(x.Transpose(0, 1), null, null);
        Assert.Equal(output.Transpose(0, 1).ToDoubleArray(), bf.ToDoubleArray());
    }
}
