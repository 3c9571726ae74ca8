using System.Text.Json;

namespace Higher.Conformance.Engine;

/// <summary>
/// Golden values from real PyTorch, read from Fixtures/engine.json (written by
/// tools/fixtures/gen_engine_fixtures.py; the tests never run Python). Arrays are stored flat,
/// row-major, with their shapes and dtypes.
/// </summary>
public static class EngineFixture
{
    private static readonly Lazy<JsonElement> LazyRoot = new(Load);

    /// <summary>The whole document.</summary>
    public static JsonElement Root => LazyRoot.Value;

    /// <summary>The PyTorch version that produced the values.</summary>
    public static string TorchVersion => Root.GetProperty("torch_version").GetString()!;

    /// <summary>Names of the single-op cases, in file order.</summary>
    public static IReadOnlyList<string> OpNames =>
        Root.GetProperty("ops").EnumerateArray().Select(c => c.GetProperty("name").GetString()!).ToArray();

    /// <summary>Names of the single-op cases, for theories.</summary>
    public static TheoryData<string> OpCaseNames => new(OpNames);

    /// <summary>Names of the single-op cases that carry second-order values.</summary>
    public static TheoryData<string> SecondOrderOpCaseNames =>
        new(Root.GetProperty("ops").EnumerateArray().Where(c => c.TryGetProperty("grad_grads", out _)).Select(c => c.GetProperty("name").GetString()!));

    /// <summary>The single-op case called <paramref name="name"/>.</summary>
    public static OpCase Op(string name)
    {
        foreach (var c in Root.GetProperty("ops").EnumerateArray())
        {
            if (c.GetProperty("name").GetString() == name)
            {
                return new OpCase(c);
            }
        }
        throw new KeyNotFoundException($"No op case '{name}' in engine.json.");
    }

    private static JsonElement Load()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "engine.json");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                "engine.json was not copied next to the tests; regenerate it with tools/fixtures/gen_engine_fixtures.py and check the Fixtures item of Conformance.csproj.", path);
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.Clone();
    }
}

/// <summary>One stored array: its shape, dtype and flat row-major values.</summary>
public sealed class FixtureArray
{
    private FixtureArray(int[] shape, DType dtype, double[] values, long[]? integers, bool[]? booleans)
    {
        Shape = shape;
        DType = dtype;
        Values = values;
        Integers = integers;
        Booleans = booleans;
    }

    /// <summary>Dimensions.</summary>
    public int[] Shape { get; }

    /// <summary>Element type as stored by the generator.</summary>
    public DType DType { get; }

    /// <summary>The values as doubles (exact for float32, float64 and small integers).</summary>
    public double[] Values { get; }

    /// <summary>The values of an int64 array; null otherwise.</summary>
    public long[]? Integers { get; }

    /// <summary>The values of a bool array; null otherwise.</summary>
    public bool[]? Booleans { get; }

    /// <summary>Parses {"shape", "dtype", "data"}.</summary>
    public static FixtureArray Parse(JsonElement e)
    {
        var shape = e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
        var dtypeName = e.GetProperty("dtype").GetString();
        var data = e.GetProperty("data");
        switch (dtypeName)
        {
            case "float64":
            case "float32":
                {
                    var values = data.EnumerateArray().Select(v => v.GetDouble()).ToArray();
                    return new FixtureArray(shape, dtypeName == "float64" ? DType.Float64 : DType.Float32, values, null, null);
                }
            case "int64":
                {
                    var ints = data.EnumerateArray().Select(v => v.GetInt64()).ToArray();
                    return new FixtureArray(shape, DType.Int64, Array.ConvertAll(ints, v => (double)v), ints, null);
                }
            case "bool":
                {
                    var bools = data.EnumerateArray().Select(v => v.GetBoolean()).ToArray();
                    return new FixtureArray(shape, DType.Bool, Array.ConvertAll(bools, v => v ? 1.0 : 0.0), null, bools);
                }
            default:
                throw new InvalidDataException($"Unknown fixture dtype '{dtypeName}'.");
        }
    }

    /// <summary>Uploads the array to <paramref name="device"/> with its stored dtype.</summary>
    public Tensor ToTensor(Device device) => DType switch
    {
        DType.Float64 => Tensor.FromArray(Values, new Shape(Shape), device),
        DType.Float32 => Tensor.FromArray(Array.ConvertAll(Values, v => (float)v), new Shape(Shape), device),
        DType.Int64 => Tensor.FromArray(Integers!, new Shape(Shape), device),
        _ => Tensor.FromArray(Booleans!, new Shape(Shape), device),
    };
}

/// <summary>A single-op case: named inputs, op parameters, the output, VJPs and second-order terms.</summary>
public sealed class OpCase(JsonElement element)
{
    /// <summary>Case name, e.g. "softmax".</summary>
    public string Name => element.GetProperty("name").GetString()!;

    /// <summary>Inputs by name.</summary>
    public IReadOnlyDictionary<string, FixtureArray> Inputs => Map("inputs");

    /// <summary>Names of the inputs the gradients are taken with respect to, in order.</summary>
    public IReadOnlyList<string> Diff => element.GetProperty("diff").EnumerateArray().Select(e => e.GetString()!).ToArray();

    /// <summary>Forward output (the values, for max/min along an axis).</summary>
    public FixtureArray Output => FixtureArray.Parse(element.GetProperty("output"));

    /// <summary>Indices returned by max/min along an axis; null for other ops.</summary>
    public FixtureArray? Indices => element.TryGetProperty("indices", out var e) ? FixtureArray.Parse(e) : null;

    /// <summary>The upstream gradient of the VJPs.</summary>
    public FixtureArray GradOutput => FixtureArray.Parse(element.GetProperty("grad_output"));

    /// <summary>VJPs by input name.</summary>
    public IReadOnlyDictionary<string, FixtureArray> Grads => Map("grads");

    /// <summary>Whether the case carries the second-order term (absent where torch's own value is NaN).</summary>
    public bool HasSecondOrder => element.TryGetProperty("grad_grads", out _);

    /// <summary>The vectors v_i of the second-order term Σ_i ⟨VJP_i, v_i⟩, by input name.</summary>
    public IReadOnlyDictionary<string, FixtureArray> GradGradsV => Map("grad_grads_v");

    /// <summary>d/d(input) of Σ_i ⟨VJP_i, v_i⟩, by input name.</summary>
    public IReadOnlyDictionary<string, FixtureArray> GradGrads => Map("grad_grads");

    private JsonElement Params => element.GetProperty("params");

    /// <summary>An integer parameter.</summary>
    public int Int(string name) => Params.GetProperty(name).GetInt32();

    /// <summary>A long parameter, or <paramref name="fallback"/> when absent.</summary>
    public long Long(string name, long fallback) => Params.TryGetProperty(name, out var e) ? e.GetInt64() : fallback;

    /// <summary>A real parameter.</summary>
    public double Double(string name) => Params.GetProperty(name).GetDouble();

    /// <summary>A real parameter, or <paramref name="fallback"/> when absent.</summary>
    public double Double(string name, double fallback) => Params.TryGetProperty(name, out var e) ? e.GetDouble() : fallback;

    /// <summary>A bool parameter.</summary>
    public bool Bool(string name) => Params.GetProperty(name).GetBoolean();

    /// <summary>A string parameter, or <paramref name="fallback"/> when absent.</summary>
    public string String(string name, string fallback) => Params.TryGetProperty(name, out var e) ? e.GetString()! : fallback;

    /// <summary>An integer-list parameter.</summary>
    public int[] Ints(string name) => Params.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private Dictionary<string, FixtureArray> Map(string property)
    {
        var map = new Dictionary<string, FixtureArray>();
        foreach (var p in element.GetProperty(property).EnumerateObject())
        {
            map[p.Name] = FixtureArray.Parse(p.Value);
        }
        return map;
    }
}
