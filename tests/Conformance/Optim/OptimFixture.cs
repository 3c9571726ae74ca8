using System.Text.Json;
using Higher.Conformance.Engine;
using Higher.Nn;

namespace Higher.Conformance.Optim;

/// <summary>
/// Golden optimizer trajectories, scheduler sequences and clipping results from real PyTorch,
/// read from Fixtures/optim.json (written by tools/fixtures/gen_nn_optim_fixtures.py).
/// </summary>
public static class OptimFixture
{
    private static readonly Lazy<JsonElement> LazyRoot = new(() => LoadJson("optim.json"));

    /// <summary>The whole document.</summary>
    public static JsonElement Root => LazyRoot.Value;

    /// <summary>Names of the optimizer cases.</summary>
    public static TheoryData<string> OptimizerCases => new(Root.GetProperty("optimizers").EnumerateArray().Select(c => c.GetProperty("name").GetString()!));

    /// <summary>Names of the scheduler cases.</summary>
    public static TheoryData<string> SchedulerCases => new(Root.GetProperty("schedulers").EnumerateArray().Select(c => c.GetProperty("name").GetString()!));

    /// <summary>The optimizer case <paramref name="name"/>.</summary>
    public static JsonElement Optimizer(string name) => Find("optimizers", name);

    /// <summary>The scheduler case <paramref name="name"/>.</summary>
    public static JsonElement Scheduler(string name) => Find("schedulers", name);

    /// <summary>The model of the trajectories, float64, with torch's initial weights loaded by name.</summary>
    public static Sequential Model(Device device)
    {
        var model = new Sequential(new Linear(4, 3), new Tanh(), new Linear(3, 4, bias: false), new Sigmoid(), new Linear(4, 2));
        model.To(DType.Float64).To(device);
        model.LoadStateDict(Tensors(Root.GetProperty("model").GetProperty("state"), device));
        return model;
    }

    /// <summary>The fixture's loss: Σ (model(x) - target)².</summary>
    public static Tensor Loss(Module model, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        var m = Root.GetProperty("model");
        var x = FixtureArray.Parse(m.GetProperty("input")).ToTensor(device);
        var target = FixtureArray.Parse(m.GetProperty("target")).ToTensor(device);
        var d = model.Forward(x) - target;
        return (d * d).Sum();
    }

    /// <summary>An object of named arrays as tensors on <paramref name="device"/>.</summary>
    public static Dictionary<string, Tensor> Tensors(JsonElement obj, Device device) =>
        obj.EnumerateObject().ToDictionary(p => p.Name, p => FixtureArray.Parse(p.Value).ToTensor(device));

    /// <summary>An object of numbers as a dictionary.</summary>
    public static Dictionary<string, double> Numbers(JsonElement obj) =>
        obj.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());

    /// <summary>Reads Fixtures/<paramref name="file"/> next to the test assembly.</summary>
    public static JsonElement LoadJson(string file)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", file);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                $"{file} was not copied next to the tests; regenerate it with tools/fixtures/gen_nn_optim_fixtures.py and check the Fixtures item of Conformance.csproj.", path);
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.Clone();
    }

    private static JsonElement Find(string section, string name)
    {
        foreach (var c in Root.GetProperty(section).EnumerateArray())
        {
            if (c.GetProperty("name").GetString() == name)
            {
                return c;
            }
        }
        throw new KeyNotFoundException($"No {section} case '{name}' in optim.json.");
    }
}
