using System.Text.Json;
using Higher.Conformance.Engine;
using Higher.Conformance.Optim;
using Higher.Nn;

namespace Higher.Conformance.Nn;

/// <summary>
/// Every layer against torch 1.13 (Fixtures/nn.json): torch's state dict loaded by name (strict, so
/// parameter and buffer names are checked too), forward outputs, the loss L = Σ_k ⟨w_k, y_k⟩ +
/// ½Σ_k |y_k|², its gradients w.r.t. the float inputs and every parameter, the gradients of the
/// second-order term |dL/dx|² (|dL/dweight|² for Embedding), and BatchNorm's buffers after the
/// forward passes, all to a max-norm relative error of 1e-10.
/// </summary>
public abstract class LayerFixtureTests
{
    private const double Tolerance = 1e-10;

    private static readonly Lazy<JsonElement> Root = new(() => OptimFixture.LoadJson("nn.json"));

    /// <summary>The device the layers run on.</summary>
    protected abstract Device Device { get; }

    public static TheoryData<string> Cases => new(Root.Value.GetProperty("layers").EnumerateArray().Select(c => c.GetProperty("name").GetString()!));

    private static JsonElement Case(string name) =>
        Root.Value.GetProperty("layers").EnumerateArray().First(c => c.GetProperty("name").GetString() == name);

    /// <summary>The Higher module for a fixture's torch module and constructor arguments.</summary>
    private static Module Build(string kind, JsonElement a)
    {
        int I(string k) => a.GetProperty(k).GetInt32();
        double D(string k) => a.GetProperty(k).GetDouble();
        bool B(string k) => a.GetProperty(k).GetBoolean();
        string S(string k) => a.GetProperty(k).GetString()!;
        return kind switch
        {
            "Linear" => new Linear(I("in"), I("out"), B("bias")),
            "Identity" => new Identity(),
            "Flatten" => new Flatten(I("start"), I("end")),
            "ReLU" => new Relu(),
            "LeakyReLU" => new LeakyRelu(D("negative_slope")),
            "Tanh" => new Tanh(),
            "Sigmoid" => new Sigmoid(),
            "Softplus" => new Softplus(D("beta"), D("threshold")),
            "GELU" => new Gelu(S("approximate") == "tanh"),
            "Dropout" => new Dropout(D("p")),
            "LayerNorm" => new LayerNorm(a.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray(), D("eps"), B("affine")),
            "BatchNorm1d" => new BatchNorm1d(I("features"), D("eps"),
                a.GetProperty("momentum").ValueKind == JsonValueKind.Null ? null : D("momentum"), B("affine"), B("track")),
            "Embedding" => new Embedding(I("num"), I("dim"), a.GetProperty("padding_idx").ValueKind == JsonValueKind.Null ? null : I("padding_idx")),
            "Sequential" => new Sequential(new Linear(4, 5), new Tanh(), new Linear(5, 2)),
            "RNN" => new Rnn(I("input"), I("hidden"), I("layers"), relu: S("nonlinearity") == "relu", bias: B("bias"),
                batchFirst: B("batch_first"), bidirectional: B("bidirectional")),
            "GRU" => new Gru(I("input"), I("hidden"), I("layers"), B("bias"), B("batch_first"), bidirectional: B("bidirectional")),
            "LSTM" => new Lstm(I("input"), I("hidden"), I("layers"), B("bias"), B("batch_first"), bidirectional: B("bidirectional")),
            "RNNCell" => new RnnCell(I("input"), I("hidden"), B("bias"), relu: S("nonlinearity") == "relu"),
            "GRUCell" => new GruCell(I("input"), I("hidden"), B("bias")),
            "LSTMCell" => new LstmCell(I("input"), I("hidden"), B("bias")),
            _ => throw new ArgumentException($"Unknown module '{kind}'.", nameof(kind)),
        };
    }

    /// <summary>Runs the module the way the fixture called torch's, naming the outputs as it did.</summary>
    private static Dictionary<string, Tensor> Call(Module m, Dictionary<string, Tensor> inputs)
    {
        var x = inputs["x"];
        Tensor? Opt(string k) => inputs.TryGetValue(k, out var t) ? t : null;
        switch (m)
        {
            case Lstm lstm:
                {
                    var (output, h, c) = lstm.Forward(x, Opt("h0"), Opt("c0"));
                    return new() { ["output"] = output, ["h_n"] = h, ["c_n"] = c };
                }
            case Rnn rnn:
                {
                    var (output, h) = rnn.Forward(x, Opt("h0"));
                    return new() { ["output"] = output, ["h_n"] = h };
                }
            case Gru gru:
                {
                    var (output, h) = gru.Forward(x, Opt("h0"));
                    return new() { ["output"] = output, ["h_n"] = h };
                }
            case RnnCell cell:
                return new() { ["h"] = cell.Forward(x, Opt("hx")) };
            case GruCell cell:
                return new() { ["h"] = cell.Forward(x, Opt("hx")) };
            case LstmCell cell:
                {
                    var (h, c) = cell.Forward(x, Opt("hx"), Opt("cx"));
                    return new() { ["h"] = h, ["c"] = c };
                }
            default:
                return new() { ["output"] = m.Forward(x) };
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Layer_MatchesTorch(string name)
    {
        var c = Case(name);
        var module = Build(c.GetProperty("module").GetString()!, c.GetProperty("args"));
        module.To(DType.Float64).To(Device);
        module.Train(c.GetProperty("train").GetBoolean());
        module.LoadStateDict(OptimFixture.Tensors(c.GetProperty("state"), Device));
        if (c.TryGetProperty("pre_inputs", out var pre))
        {
            using var noGrad = Autograd.NoGrad();
            foreach (var p in pre.EnumerateArray())
            {
                module.Forward(FixtureArray.Parse(p).ToTensor(Device));
            }
        }
        var inputs = OptimFixture.Tensors(c.GetProperty("inputs"), Device);
        var floatInputs = inputs.Where(kv => kv.Value.DType.IsFloatingPoint()).Select(kv => kv.Key).ToArray();
        foreach (var k in floatInputs)
        {
            inputs[k] = inputs[k].WithRequiresGrad();
        }
        var outputs = Call(module, inputs);
        var agreement = new Agreement(Tolerance);
        var expectedOutputs = c.GetProperty("outputs");
        Assert.Equal(expectedOutputs.EnumerateObject().Select(p => p.Name).Order(), outputs.Keys.Order());
        var weights = OptimFixture.Tensors(c.GetProperty("loss_weights"), Device);
        Tensor? loss = null;
        foreach (var (k, y) in outputs)
        {
            AssertClose(agreement, expectedOutputs.GetProperty(k), y, $"{name}: {k}");
            var term = (weights[k] * y).Sum() + (y * y).Sum() * 0.5;
            loss = loss is null ? term : loss + term;
        }
        agreement.Check([c.GetProperty("loss").GetDouble()], [loss!.Item()], $"{name}: loss");

        var named = module.NamedParameters().ToList();
        var keys = floatInputs.Select(k => "input." + k).Concat(named.Select(p => "param." + p.Name)).ToArray();
        var targets = floatInputs.Select(k => inputs[k]).Concat(named.Select(p => p.Value)).ToArray();
        var grads = Autograd.Grad([loss], targets, createGraph: true, allowUnused: true);
        var expectedGrads = c.GetProperty("grads");
        Assert.Equal(expectedGrads.EnumerateObject().Select(p => p.Name).Order(), keys.Order());
        double gradScale = Scale(expectedGrads);
        for (int i = 0; i < keys.Length; i++)
        {
            AssertClose(agreement, expectedGrads.GetProperty(keys[i]), grads[i] ?? Tensor.ZerosLike(targets[i]), $"{name}: dL/d{keys[i]}", gradScale);
        }

        var of = grads[Array.IndexOf(keys, c.GetProperty("second_of").GetString())]!;
        var s = (of * of).Sum();
        var second = s.RequiresGrad ? Autograd.Grad([s], targets, allowUnused: true) : new Tensor?[targets.Length];
        var expectedSecond = c.GetProperty("second_order");
        double secondScale = Scale(expectedSecond);
        for (int i = 0; i < keys.Length; i++)
        {
            AssertClose(agreement, expectedSecond.GetProperty(keys[i]), second[i] ?? Tensor.ZerosLike(targets[i]),
                $"{name}: d|dL/d{c.GetProperty("second_of").GetString()}|²/d{keys[i]}", secondScale);
        }

        var buffers = module.NamedBuffers().ToDictionary(b => b.Name, b => b.Value);
        foreach (var b in c.GetProperty("buffers_after").EnumerateObject())
        {
            Assert.True(buffers.ContainsKey(b.Name), $"{name}: no buffer '{b.Name}'.");
            AssertClose(agreement, b.Value, buffers[b.Name], $"{name}: buffer {b.Name} after forward");
        }
        agreement.Report(name);
    }

    /// <summary>
    /// Asserts shape and values. With a <paramref name="scale"/> the error is relative to it (the
    /// largest magnitude over every gradient of the case, i.e. the max-norm relative error of the
    /// whole gradient vector), so a gradient that is zero in exact arithmetic (BatchNorm's
    /// second-order term w.r.t. β) is compared with the round-off both sides make, not with itself.
    /// </summary>
    private static void AssertClose(Agreement agreement, JsonElement expected, Tensor actual, string what, double scale = 0)
    {
        var e = FixtureArray.Parse(expected);
        Assert.True(e.Shape.AsSpan().SequenceEqual(actual.Shape.Dims), $"{what}: shape {actual.Shape}, expected {new Shape(e.Shape)}.");
        var a = actual.ToDoubleArray();
        double maxAbs = e.Values.Length == 0 ? 0 : e.Values.Max(Math.Abs);
        double error = Numeric.MaxNormRelativeError(e.Values, a) * Math.Max(maxAbs, Numeric.Tiny) / Math.Max(Math.Max(maxAbs, scale), Numeric.Tiny);
        agreement.Record(error);
        Assert.True(error <= Tolerance, FormattableString.Invariant($"{what}: relative error {error:E3} > {Tolerance:E0} (scale {Math.Max(maxAbs, scale):E3})."));
    }

    /// <summary>The largest magnitude in an object of arrays.</summary>
    private static double Scale(JsonElement arrays) =>
        arrays.EnumerateObject().SelectMany(p => FixtureArray.Parse(p.Value).Values).Select(Math.Abs).DefaultIfEmpty(0).Max();
}

/// <summary>The layer fixtures on the managed CPU backend.</summary>
public sealed class LayerFixtureTestsOnReference : LayerFixtureTests
{
    protected override Device Device => Device.Cpu;
}
