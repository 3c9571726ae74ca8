using System.Globalization;
using System.Text.Json;
using Higher.Conformance.Engine;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Higher;

/// <summary>
/// Golden values for the inner-loop API from real PyTorch, read from Fixtures/higher.json (written by
/// tools/fixtures/gen_higher_fixtures.py; the tests never run Python). Each case is a 2-3-2 tanh MLP
/// trained for a few steps by one optimizer, unrolled by hand in PyTorch with create_graph=True.
/// </summary>
public static class HigherFixture
{
    private static readonly Lazy<JsonElement> LazyRoot = new(Load);

    /// <summary>The whole document.</summary>
    public static JsonElement Root => LazyRoot.Value;

    /// <summary>Names of every case, in file order.</summary>
    public static IReadOnlyList<string> CaseNames =>
        Root.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("name").GetString()!).ToArray();

    /// <summary>The case called <paramref name="name"/>.</summary>
    public static GoldenCase Case(string name)
    {
        foreach (var c in Root.GetProperty("cases").EnumerateArray())
        {
            if (c.GetProperty("name").GetString() == name)
            {
                return new GoldenCase(c);
            }
        }
        throw new KeyNotFoundException($"No case '{name}' in higher.json.");
    }

    private static JsonElement Load()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "higher.json");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                "higher.json was not copied next to the tests; regenerate it with tools/fixtures/gen_higher_fixtures.py and check the Fixtures item of Conformance.csproj.", path);
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.Clone();
    }
}

/// <summary>One golden case: optimizer, groups, tensor hyperparameters, data and the expected results.</summary>
public sealed class GoldenCase(JsonElement e)
{
    /// <summary>Case name, e.g. "adam_amsgrad".</summary>
    public string Name => e.GetProperty("name").GetString()!;

    /// <summary>Optimizer name as in <see cref="Optimizers.Create"/>.</summary>
    public string Optimizer => e.GetProperty("optimizer").GetString()!;

    /// <summary>Inner steps.</summary>
    public int Steps => e.GetProperty("steps").GetInt32();

    /// <summary>Parameter groups: indices into (W1, b1, W2, b2) and every hyperparameter by Higher's name.</summary>
    public IReadOnlyList<(int[] Params, Dictionary<string, double> Options)> Groups =>
        e.GetProperty("groups").EnumerateArray().Select(g => (
            g.GetProperty("params").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
            g.GetProperty("options").EnumerateObject().ToDictionary(o => o.Name, o => o.Value.GetDouble()))).ToList();

    /// <summary>Hyperparameters given as tensors that require grad (one per group).</summary>
    public IReadOnlyList<string> Hypers => e.GetProperty("hypers").EnumerateArray().Select(h => h.GetString()!).ToArray();

    /// <summary>Initial W1, b1, W2, b2.</summary>
    public IReadOnlyList<FixtureArray> Weights => Arrays("weights");

    /// <summary>Training batches [steps, 5, 2]; step k uses batch k.</summary>
    public FixtureArray XTrain => FixtureArray.Parse(e.GetProperty("x_train"));

    /// <summary>Training targets [steps, 5, 2].</summary>
    public FixtureArray YTrain => FixtureArray.Parse(e.GetProperty("y_train"));

    /// <summary>Query inputs.</summary>
    public FixtureArray XQuery => FixtureArray.Parse(e.GetProperty("x_query"));

    /// <summary>Query targets.</summary>
    public FixtureArray YQuery => FixtureArray.Parse(e.GetProperty("y_query"));

    /// <summary>Training loss at each step, before its update.</summary>
    public double[] TrainLosses => e.GetProperty("train_losses").EnumerateArray().Select(v => v.GetDouble()).ToArray();

    /// <summary>Fast weights after the last step.</summary>
    public IReadOnlyList<FixtureArray> FinalWeights => Arrays("final_weights");

    /// <summary>Per weight, the optimizer's final state tensors shaped like it, by name.</summary>
    public IReadOnlyList<IReadOnlyDictionary<string, FixtureArray>> FinalState =>
        e.GetProperty("final_state").EnumerateArray()
            .Select(s => (IReadOnlyDictionary<string, FixtureArray>)s.EnumerateObject().ToDictionary(p => p.Name, p => FixtureArray.Parse(p.Value))).ToList();

    /// <summary>Query loss at the final fast weights.</summary>
    public double QueryLoss => e.GetProperty("query_loss").GetDouble();

    /// <summary>d(query loss)/d(initial weights).</summary>
    public IReadOnlyList<FixtureArray> MetaGradWeights => Arrays("meta_grad_weights");

    /// <summary>d(query loss)/d(hyperparameter tensor), per name, one value per group.</summary>
    public IReadOnlyDictionary<string, double[]> MetaGradHypers =>
        e.GetProperty("meta_grad_hypers").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray());

    private FixtureArray[] Arrays(string property) => e.GetProperty(property).EnumerateArray().Select(FixtureArray.Parse).ToArray();

    /// <summary>Shows the name (theory display).</summary>
    public override string ToString() => Name;
}

/// <summary>Builds every optimizer of Higher by the names the fixtures use.</summary>
public static class Optimizers
{
    /// <summary>Every optimizer name.</summary>
    public static readonly string[] Names = ["sgd", "adam", "adamw", "adagrad", "adadelta", "adamax", "asgd", "rmsprop", "rprop", "nadam", "radam"];

    /// <summary>The optimizer <paramref name="name"/> over <paramref name="groups"/> (options default to PyTorch's).</summary>
    public static Optimizer Create(string name, IEnumerable<ParamGroup> groups) => name switch
    {
        "sgd" => new Sgd(groups),
        "adam" => new Adam(groups),
        "adamw" => new AdamW(groups),
        "adagrad" => new Adagrad(groups),
        "adadelta" => new Adadelta(groups),
        "adamax" => new Adamax(groups),
        "asgd" => new Asgd(groups),
        "rmsprop" => new RmsProp(groups),
        "rprop" => new Rprop(groups),
        "nadam" => new NAdam(groups),
        "radam" => new RAdam(groups),
        _ => throw new ArgumentException($"Unknown optimizer '{name}'.", nameof(name)),
    };

    /// <summary>The optimizer <paramref name="name"/> over one group of <paramref name="parameters"/> with <paramref name="options"/>.</summary>
    public static Optimizer Create(string name, IEnumerable<Tensor> parameters, IReadOnlyDictionary<string, double>? options = null) =>
        Create(name, [new ParamGroup(parameters, options)]);
}

/// <summary>The models of higher's test suite and the fixtures' MLP, in float64.</summary>
public static class TestModels
{
    /// <summary>higher's simple model: Linear(4,3)-ReLU-Linear(3,4, no bias)-Sigmoid-Linear(4,2).</summary>
    public static Sequential Simple(Generator g) =>
        F64(new Sequential(new Linear(4, 3, generator: g), new Relu(), new Linear(3, 4, bias: false, generator: g), new Sigmoid(), new Linear(4, 2, generator: g)));

    /// <summary>higher's _Enc: one Linear(4,2) reached through two nested wrappers; output e1(x) + e2(x).</summary>
    public static Module SharedWeights(Generator g) => F64(new SharedEncoder(new Linear(4, 2, generator: g)));

    /// <summary>higher's shared-weight Sequential: proj, ReLU, Linear(3,4), Sigmoid, proj again, Tanh, Linear(3,2).</summary>
    public static Sequential SharedWeightsSequential(Generator g)
    {
        var proj = new Linear(4, 3, generator: g);
        return F64(new Sequential(proj, new Relu(), new Linear(3, 4, generator: g), new Sigmoid(), proj, new Tanh(), new Linear(3, 2, generator: g)));
    }

    /// <summary>higher's _PartiallyUsed: parameters a and b [4,3], output x·a (b unused).</summary>
    public static Module PartiallyUsed(Generator g) => new PartiallyUsedModel(g);

    /// <summary>higher's BatchNorm MLP: Linear(4,3)-ReLU-BatchNorm1d(3)-Linear(3,4)-Sigmoid-BatchNorm1d(4)-Linear(4,2).</summary>
    public static Sequential BatchNormMlp(Generator g) =>
        F64(new Sequential(new Linear(4, 3, generator: g), new Relu(), new BatchNorm1d(3), new Linear(3, 4, generator: g), new Sigmoid(), new BatchNorm1d(4), new Linear(4, 2, generator: g)));

    /// <summary>The model called <paramref name="name"/> ("simple", "shared", "shared_seq", "partially_used", "batchnorm").</summary>
    public static Module Build(string name, Generator g) => name switch
    {
        "simple" => Simple(g),
        "shared" => SharedWeights(g),
        "shared_seq" => SharedWeightsSequential(g),
        "partially_used" => PartiallyUsed(g),
        "batchnorm" => BatchNormMlp(g),
        _ => throw new ArgumentException($"Unknown model '{name}'.", nameof(name)),
    };

    /// <summary>The model names of higher's patch tests.</summary>
    public static readonly string[] PatchModels = ["simple", "shared", "shared_seq", "partially_used", "batchnorm"];

    private static T F64<T>(T m) where T : Module
    {
        m.To(DType.Float64);
        return m;
    }

    /// <summary>Uniform [0, 1) float64 inputs, as torch.rand.</summary>
    public static Tensor Rand(Generator g, params int[] shape) => Tensor.Rand(new Shape(shape), DType.Float64, g);
}

/// <summary>higher's _NestedEnc: forwards to its one submodule.</summary>
public sealed class NestedEncoder : Module
{
    private readonly Module _f;

    public NestedEncoder(Module f) => _f = RegisterModule("f", f);

    public Module Inner => _f;

    public override Tensor Forward(Tensor input) => _f.Forward(input);
}

/// <summary>higher's _Enc: e1 and e2 wrap the same Linear, so its weights are tied.</summary>
public sealed class SharedEncoder : Module
{
    private readonly NestedEncoder _e1;
    private readonly NestedEncoder _e2;

    public SharedEncoder(Module inner)
    {
        _e1 = RegisterModule("e1", new NestedEncoder(inner));
        _e2 = RegisterModule("e2", new NestedEncoder(_e1.Inner));
    }

    public override Tensor Forward(Tensor input) => _e1.Forward(input) + _e2.Forward(input);
}

/// <summary>higher's _PartiallyUsed: x·a; b never enters the output.</summary>
public sealed class PartiallyUsedModel : Module
{
    private readonly Parameter _a;

    public PartiallyUsedModel(Generator g)
    {
        _a = RegisterParameter("a", TestModels.Rand(g, 4, 3))!;
        RegisterParameter("b", TestModels.Rand(g, 4, 3));
    }

    public override Tensor Forward(Tensor input) => input.MatMul(_a.Value);
}

/// <summary>The fixtures' model: out = tanh(x W1ᵀ + b1) W2ᵀ + b2, parameters named as in higher.json.</summary>
public sealed class TinyMlp : Module
{
    private readonly Parameter _w1;
    private readonly Parameter _b1;
    private readonly Parameter _w2;
    private readonly Parameter _b2;

    public TinyMlp(IReadOnlyList<Tensor> weights)
    {
        _w1 = RegisterParameter("W1", weights[0])!;
        _b1 = RegisterParameter("b1", weights[1])!;
        _w2 = RegisterParameter("W2", weights[2])!;
        _b2 = RegisterParameter("b2", weights[3])!;
    }

    public override Tensor Forward(Tensor input) => Apply([_w1.Value, _b1.Value, _w2.Value, _b2.Value], input);

    /// <summary>The same function of explicit weights.</summary>
    public static Tensor Apply(IReadOnlyList<Tensor> w, Tensor x) => Tensor.Linear(Tensor.Linear(x, w[0], w[1]).Tanh(), w[2], w[3]);
}

/// <summary>Comparisons shared by the inner-loop tests.</summary>
public static class Check
{
    /// <summary>Max-norm relative error of <paramref name="actual"/> against <paramref name="expected"/> (see <see cref="Numeric.MaxNormRelativeError"/>).</summary>
    public static double Error(Tensor expected, Tensor actual)
    {
        Assert.True(expected.Shape == actual.Shape, $"shape {actual.Shape}, expected {expected.Shape}");
        return Numeric.MaxNormRelativeError(expected.ToDoubleArray(), actual.ToDoubleArray());
    }

    /// <summary>Asserts max-norm relative error ≤ <paramref name="tolerance"/>.</summary>
    public static void Close(Tensor expected, Tensor? actual, double tolerance, string what)
    {
        Assert.NotNull(actual);
        Assert.True(expected.Shape == actual.Shape, $"{what}: shape {actual.Shape}, expected {expected.Shape}.");
        Numeric.AssertClose(expected.ToDoubleArray(), actual.ToDoubleArray(), tolerance, what);
    }

    /// <summary>Asserts two weight lists agree element by element.</summary>
    public static void Close(IReadOnlyList<Tensor> expected, IReadOnlyList<Tensor?> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Close(expected[i], actual[i], tolerance, $"{what}[{i}]");
        }
    }

    /// <summary>Asserts bitwise equality of values and shapes.</summary>
    public static void Same(Tensor expected, Tensor? actual, string what)
    {
        Assert.NotNull(actual);
        Assert.True(expected.Shape == actual.Shape, $"{what}: shape {actual.Shape}, expected {expected.Shape}.");
        var a = actual.ToDoubleArray();
        var b = expected.ToDoubleArray();
        for (int i = 0; i < a.Length; i++)
        {
            if (BitConverter.DoubleToInt64Bits(a[i]) != BitConverter.DoubleToInt64Bits(b[i]))
            {
                Assert.Fail(string.Create(CultureInfo.InvariantCulture, $"{what}: element {i} is {a[i]:R}, expected {b[i]:R} (bitwise)."));
            }
        }
    }

    /// <summary>Asserts bitwise equality of two weight lists.</summary>
    public static void Same(IReadOnlyList<Tensor> expected, IReadOnlyList<Tensor?> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Same(expected[i], actual[i], $"{what}[{i}]");
        }
    }

    /// <summary>True if the two tensors have equal values.</summary>
    public static bool Equal(Tensor a, Tensor b) => a.Shape == b.Shape && a.ToDoubleArray().AsSpan().SequenceEqual(b.ToDoubleArray());

    /// <summary>Asserts every element is finite.</summary>
    public static void Finite(Tensor? t, string what)
    {
        Assert.NotNull(t);
        var values = t.ToDoubleArray();
        int bad = Array.FindIndex(values, v => !double.IsFinite(v));
        Assert.True(bad < 0, bad < 0 ? "" : string.Create(CultureInfo.InvariantCulture, $"{what}: element {bad} is {values[bad]}."));
    }

    /// <summary>Asserts some element is non-zero.</summary>
    public static void NonZero(Tensor? t, string what)
    {
        Assert.NotNull(t);
        Assert.True(t.ToDoubleArray().Any(v => v != 0), $"{what}: every element is 0.");
    }
}
