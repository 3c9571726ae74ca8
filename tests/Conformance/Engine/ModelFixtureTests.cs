using System.Text.Json;

namespace Higher.Conformance.Engine;

/// <summary>
/// A small MLP and a two-step differentiable SGD inner loop against PyTorch: loss, first
/// derivatives, a Hessian, mixed second derivatives of a gradient penalty, a Hessian-vector
/// product and the meta-gradient through the unrolled steps (w.r.t. the time-0 weights and the
/// learning rate). The float64 case is held to 1e-10, the float32 one to 1e-5.
/// </summary>
public abstract class ModelFixtureTests : EngineTestBase
{
    private static readonly string[] Names = ["W1", "b1", "W2", "b2", "W3", "b3"];

    /// <summary>The fixture's architecture: tanh, then sigmoid, then a linear read-out.</summary>
    private static Tensor Mlp(Tensor[] w, Tensor x)
    {
        var h1 = F.Linear(x, w[0], w[1]).Tanh();
        var h2 = F.Linear(h1, w[2], w[3]).Sigmoid();
        return F.Linear(h2, w[4], w[5]);
    }

    public static TheoryData<string> MlpCases => new("mlp", "mlp_float32");

    private sealed class MlpSetup
    {
        public required JsonElement Fixture { get; init; }
        public required DType DType { get; init; }
        public required Tensor[] Weights { get; init; }
        public required Tensor X { get; init; }
        public required Tensor Loss { get; init; }

        /// <summary>dL/dW1..dL/db3 then dL/dx, with graphs (createGraph: true).</summary>
        public required Tensor[] Grads { get; init; }
    }

    private MlpSetup SetUp(string key)
    {
        var f = EngineFixture.Root.GetProperty(key);
        var weights = Names.Select(n => Load(FixtureArray.Parse(f.GetProperty("params").GetProperty(n))).WithRequiresGrad()).ToArray();
        var x = Load(FixtureArray.Parse(f.GetProperty("x"))).WithRequiresGrad();
        var y = Load(FixtureArray.Parse(f.GetProperty("y")));
        var loss = F.MseLoss(Mlp(weights, x), y);
        var grads = Autograd.Grad([loss], [.. weights, x], createGraph: true);
        return new MlpSetup
        {
            Fixture = f,
            DType = f.GetProperty("dtype").GetString() == "float32" ? DType.Float32 : DType.Float64,
            Weights = weights,
            X = x,
            Loss = loss,
            Grads = grads.Select(g => g!).ToArray(),
        };
    }

    private static FixtureArray Array(JsonElement parent, string property) => FixtureArray.Parse(parent.GetProperty(property));

    [Theory]
    [MemberData(nameof(MlpCases))]
    public void Mlp_LossAndFirstDerivatives(string key)
    {
        RequireDevice();
        var s = SetUp(key);
        Assert.Equal(s.DType, s.Loss.DType);
        AssertClose(s.Fixture.GetProperty("loss").GetDouble(), s.Loss, s.DType, $"{key} loss");
        for (int i = 0; i < Names.Length; i++)
        {
            AssertClose(Array(s.Fixture.GetProperty("grads"), Names[i]), s.Grads[i], $"{key} dL/d{Names[i]}");
        }
        AssertClose(Array(s.Fixture, "grad_x"), s.Grads[^1], $"{key} dL/dx");
    }

    [Theory]
    [MemberData(nameof(MlpCases))]
    public void Mlp_HessianOfW2(string key)
    {
        RequireDevice();
        var s = SetUp(key);
        var w2 = s.Weights[2];
        var g = s.Grads[2];
        int n = (int)w2.Numel;
        var rows = new Tensor[n];
        for (int i = 0; i < n; i++)
        {
            var basis = new double[n];
            basis[i] = 1;
            var e = Tensor.FromArray(basis, w2.Shape, Device).To(s.DType);
            rows[i] = Autograd.Grad([g], [w2], [e], retainGraph: true)[0]!.Reshape(n);
        }
        var hessian = Tensor.Stack(rows);
        AssertClose(Array(s.Fixture, "hessian_W2"), hessian, $"{key} Hessian w.r.t. W2");
    }

    [Theory]
    [MemberData(nameof(MlpCases))]
    public void Mlp_GradientPenaltyMixedDerivatives(string key)
    {
        RequireDevice();
        var s = SetUp(key);
        Tensor penalty = (s.Grads[0] * s.Grads[0]).Sum();
        for (int i = 1; i < Names.Length; i++)
        {
            penalty += (s.Grads[i] * s.Grads[i]).Sum();
        }
        AssertClose(s.Fixture.GetProperty("grad_penalty").GetDouble(), penalty, s.DType, $"{key} ||dL/dθ||²");
        var d = Autograd.Grad([penalty], [.. s.Weights, s.X], retainGraph: true);
        AssertClose(Array(s.Fixture, "grad_penalty_wrt_x"), d[^1], $"{key} d/dx ||dL/dθ||²");
        for (int i = 0; i < Names.Length; i++)
        {
            AssertClose(Array(s.Fixture.GetProperty("grad_penalty_wrt_params"), Names[i]), d[i], $"{key} d/d{Names[i]} ||dL/dθ||²");
        }
    }

    [Theory]
    [MemberData(nameof(MlpCases))]
    public void Mlp_HessianVectorProduct(string key)
    {
        RequireDevice();
        var s = SetUp(key);
        Tensor? dot = null;
        for (int i = 0; i < Names.Length; i++)
        {
            var term = (s.Grads[i] * Load(Array(s.Fixture.GetProperty("hvp_v"), Names[i]))).Sum();
            dot = dot is null ? term : dot + term;
        }
        var hv = Autograd.Grad([dot!], s.Weights, retainGraph: true);
        for (int i = 0; i < Names.Length; i++)
        {
            AssertClose(Array(s.Fixture.GetProperty("hvp"), Names[i]), hv[i], $"{key} (H·v) for {Names[i]}");
        }
    }

    [Fact]
    public void MetaGradient_ThroughTwoSgdSteps()
    {
        RequireDevice();
        var f = EngineFixture.Root.GetProperty("meta_sgd");
        var w0 = Names.Select(n => Load(Array(f.GetProperty("params"), n)).WithRequiresGrad()).ToArray();
        var lr = Scalar64(f.GetProperty("lr").GetDouble()).WithRequiresGrad();
        var xTrain = Load(Array(f, "x_train"));
        var yTrain = Load(Array(f, "y_train"));
        var trainLosses = f.GetProperty("train_losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();

        var w = w0;
        for (int step = 0; step < 2; step++)
        {
            var loss = F.CrossEntropy(Mlp(w, xTrain), yTrain);
            AssertClose(trainLosses[step], loss, DType.Float64, $"training loss at step {step}");
            var g = Autograd.Grad([loss], w, createGraph: true);
            w = w.Select((wi, i) => wi - lr * g[i]!).ToArray();
        }
        for (int i = 0; i < Names.Length; i++)
        {
            AssertClose(Array(f.GetProperty("w2"), Names[i]), w[i], $"fast weight {Names[i]} at t = 2");
        }

        var metaLoss = F.CrossEntropy(Mlp(w, Load(Array(f, "x_val"))), Load(Array(f, "y_val")));
        AssertClose(f.GetProperty("meta_loss").GetDouble(), metaLoss, DType.Float64, "meta-loss");
        var meta = Autograd.Grad([metaLoss], [.. w0, lr]);
        for (int i = 0; i < Names.Length; i++)
        {
            AssertClose(Array(f.GetProperty("meta_grads"), Names[i]), meta[i], $"d meta-loss / d{Names[i]}(t = 0)");
        }
        AssertClose(f.GetProperty("meta_grad_lr").GetDouble(), meta[^1]!, DType.Float64, "d meta-loss / d lr");
    }

    public static TheoryData<string> LinspaceCases => new("linspace", "linspace_long");

    [Theory]
    [MemberData(nameof(LinspaceCases))]
    public void Linspace_MatchesTorch(string key)
    {
        RequireDevice();
        var f = EngineFixture.Root.GetProperty("creation").GetProperty(key);
        var t = Tensor.Linspace(f.GetProperty("start").GetDouble(), f.GetProperty("end").GetDouble(), f.GetProperty("steps").GetInt32(), DType.Float64, Device);
        var expected = Array(f, "values");
        var actual = t.ToDoubleArray();
        Assert.Equal(expected.Shape, t.Shape.ToArray());
        // Interior values may differ from torch's vectorized kernel in the last bit; the ends are exact.
        Numeric.AssertClose(expected.Values, actual, Float64Tolerance, $"{key} values");
        Assert.Equal(expected.Values[0], actual[0]);
        Assert.Equal(expected.Values[^1], actual[^1]);
    }

    public static TheoryData<string> ArangeCases => new("arange", "arange_negative_step");

    [Theory]
    [MemberData(nameof(ArangeCases))]
    public void Arange_MatchesTorch(string key)
    {
        RequireDevice();
        var f = EngineFixture.Root.GetProperty("creation").GetProperty(key);
        var t = Tensor.Arange(f.GetProperty("start").GetDouble(), f.GetProperty("end").GetDouble(), f.GetProperty("step").GetDouble(), DType.Float64, Device);
        var expected = Array(f, "values");
        Assert.Equal(expected.Shape, t.Shape.ToArray());
        Numeric.AssertClose(expected.Values, t.ToDoubleArray(), Float64Tolerance, $"{key} values");
    }
}

/// <summary>The model fixtures on the managed CPU backend.</summary>
public sealed class ModelFixtureTestsOnReference : ModelFixtureTests
{
    protected override Device Device => Device.Cpu;
}
