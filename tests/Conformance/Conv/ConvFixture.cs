using System.Text.Json;
using Higher.Conformance.Engine;

namespace Higher.Conformance.Conv;

/// <summary>
/// Golden values from real PyTorch for convolution, pooling, batch norm and higher's conv net,
/// read from Fixtures/conv.json (written by tools/fixtures/gen_conv_fixtures.py; the tests never
/// run Python). Arrays use the engine fixtures' format (<see cref="FixtureArray"/>).
/// </summary>
public static class ConvFixture
{
    private static readonly Lazy<JsonElement> LazyRoot = new(Load);

    /// <summary>The whole document.</summary>
    public static JsonElement Root => LazyRoot.Value;

    /// <summary>Names of the cases in section <paramref name="section"/> ("conv2d", "max_pool2d", ...), for theories.</summary>
    public static TheoryData<string> CaseNames(string section) =>
        new(Root.GetProperty(section).EnumerateArray().Select(c => c.GetProperty("name").GetString()!));

    /// <summary>The case <paramref name="name"/> of section <paramref name="section"/>.</summary>
    public static JsonElement Case(string section, string name)
    {
        foreach (var c in Root.GetProperty(section).EnumerateArray())
        {
            if (c.GetProperty("name").GetString() == name)
            {
                return c;
            }
        }
        throw new KeyNotFoundException($"No {section} case '{name}' in conv.json.");
    }

    /// <summary>The array stored as <paramref name="property"/> of <paramref name="parent"/>; null when it is JSON null.</summary>
    public static FixtureArray? Array(JsonElement parent, string property) =>
        parent.GetProperty(property).ValueKind == JsonValueKind.Null ? null : FixtureArray.Parse(parent.GetProperty(property));

    /// <summary>A [h, w] parameter as a <see cref="Size2d"/>.</summary>
    public static Size2d Pair(JsonElement parameters, string property)
    {
        var v = parameters.GetProperty(property).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return new Size2d(v[0], v[1]);
    }

    private static JsonElement Load()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "conv.json");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                "conv.json was not copied next to the tests; regenerate it with tools/fixtures/gen_conv_fixtures.py and check the Fixtures item of Conformance.csproj.", path);
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.Clone();
    }
}
