using Higher.Conformance.Engine;
using Higher.Optim;

namespace Higher.Conformance.Optim;

/// <summary>clip_grad_norm_ (norms 2, ∞, 1, 3, and a bound that does not bind) and clip_grad_value_ against torch, to 1e-12.</summary>
public sealed class ClippingFixtureTests
{
    private const double Tolerance = 1e-12;

    public static TheoryData<int> Cases => new(Enumerable.Range(0, OptimFixture.Root.GetProperty("clipping").GetProperty("cases").GetArrayLength()));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Clipping_MatchesTorch(int index)
    {
        var clipping = OptimFixture.Root.GetProperty("clipping");
        var c = clipping.GetProperty("cases")[index];
        var model = OptimFixture.Model(Device.Cpu);
        var grads = OptimFixture.Tensors(clipping.GetProperty("grads"), Device.Cpu);
        foreach (var (name, p) in model.NamedParameters())
        {
            p.Grad = grads[name];
        }
        var agreement = new Agreement(Tolerance);
        string what;
        if (c.GetProperty("kind").GetString() == "norm")
        {
            var normType = c.GetProperty("norm_type");
            double type = normType.ValueKind == System.Text.Json.JsonValueKind.String ? double.PositiveInfinity : normType.GetDouble();
            double maxNorm = c.GetProperty("max_norm").GetDouble();
            what = $"clip_grad_norm_({maxNorm}, {type})";
            var total = GradClipping.ClipGradNorm(model.Parameters(), maxNorm, type);
            agreement.Check([c.GetProperty("total_norm").GetDouble()], [total.Item()], what + " total norm");
        }
        else
        {
            double clipValue = c.GetProperty("clip_value").GetDouble();
            what = $"clip_grad_value_({clipValue})";
            GradClipping.ClipGradValue(model.Parameters(), clipValue);
        }
        foreach (var (name, p) in model.NamedParameters())
        {
            agreement.Check(FixtureArray.Parse(c.GetProperty("clipped").GetProperty(name)).Values, p.Grad!.ToDoubleArray(), $"{what}: {name}");
        }
        agreement.Report(what);
    }
}
