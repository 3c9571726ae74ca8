using System.Text.Json;
using Higher.Conformance.Engine;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Conv;

/// <summary>
/// higher's conv net (HIGHER-SEMANTICS.md §4): 3 × [Conv2d 3×3, BatchNorm2d(momentum 1), ReLU,
/// MaxPool2d 2] + Flatten + Linear(C, 5) on 28×28 inputs. Against PyTorch (conv.json, with fewer
/// channels to keep the fixture small): logits, loss, every parameter's gradient, the buffers and
/// a one-step MAML meta-gradient. With the real 64 channels: the patched module's forward with
/// fast weights is bitwise the hand-written functional net. A 10-step SGD unroll through the
/// differentiable optimizer matches a manual unroll (losses, weights, per-step gradients and
/// meta-gradients, as higher's test_patch).
/// </summary>
public abstract class ConvNetTests : EngineTestBase
{
    private const int Ways = 5;

    /// <summary>The architecture of higher's test_patch and Omniglot example, with <paramref name="channels"/> filters per conv.</summary>
    internal static Sequential BuildConvNet(int channels, Generator? generator = null)
    {
        var layers = new List<Module>();
        for (int i = 0; i < 3; i++)
        {
            layers.Add(new Conv2d(i == 0 ? 1 : channels, channels, 3, generator: generator));
            layers.Add(new BatchNorm2d(channels, momentum: 1));
            layers.Add(new Relu());
            layers.Add(new MaxPool2d(2, 2));
        }
        layers.Add(new Flatten());
        layers.Add(new Linear(channels, Ways, generator: generator));
        return new Sequential(layers);
    }

    /// <summary>The same net written by hand with functional ops, weights in <see cref="Module.NamedParameterHandles"/> order.</summary>
    internal static Tensor FunctionalConvNet(IReadOnlyList<Tensor> p, Tensor x)
    {
        var h = x;
        for (int i = 0; i < 3; i++)
        {
            h = Tensor.Conv2d(h, p[4 * i], p[(4 * i) + 1]);
            h = Tensor.BatchNorm(h, null, null, p[(4 * i) + 2], p[(4 * i) + 3], training: true);
            h = h.Relu();
            h = Tensor.MaxPool2d(h, 2, 2);
        }
        return Tensor.Linear(h.Flatten(1), p[12], p[13]);
    }

    /// <summary>
    /// Per-parameter gradients at max-norm relative <paramref name="tolerance"/>, except those that
    /// are zero up to rounding: the conv biases, whose per-channel shift the following batch norm
    /// removes, so their exact gradient is 0 and both sides hold noise of order 1e-16. Those must
    /// be within <paramref name="tolerance"/> of the largest gradient of all.
    /// </summary>
    private static void AssertGradientsClose(string[] names, double[][] expected, double[][] actual,
        double tolerance, string what)
    {
        double scale = expected.Max(e => e.Max(Math.Abs));
        for (int i = 0; i < names.Length; i++)
        {
            if (expected[i].Max(Math.Abs) > 1e-9 * scale)
            {
                Numeric.AssertClose(expected[i], actual[i], tolerance, $"{what} {names[i]}");
            }
            else
            {
                double worst = expected[i].Zip(actual[i], (e, a) => Math.Abs(e - a)).Max();
                Assert.True(worst <= tolerance * scale, $"{what} {names[i]} (zero up to rounding): error {worst:E3} > {tolerance:E0} × {scale:E3}");
            }
        }
    }

    private Sequential FixtureNet(JsonElement f)
    {
        var model = BuildConvNet(f.GetProperty("channels").GetInt32());
        model.To(DType.Float64).To(Device);
        var names = f.GetProperty("parameter_names").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var handles = model.NamedParameterHandles();
        Assert.Equal(names, handles.Select(h => h.Name).ToArray());
        foreach (var (name, handle) in handles)
        {
            handle.Data = Load(FixtureArray.Parse(f.GetProperty("params").GetProperty(name)));
        }
        return model;
    }

    [Fact]
    public void ConvNet_LossGradientsAndBuffersMatchTorch()
    {
        RequireDevice();
        var f = ConvFixture.Root.GetProperty("convnet");
        var model = FixtureNet(f);
        var x = Load(FixtureArray.Parse(f.GetProperty("x")));
        var y = Load(FixtureArray.Parse(f.GetProperty("y")));

        var logits = model.Forward(x);
        AssertClose(FixtureArray.Parse(f.GetProperty("logits")), logits, "logits");
        var loss = F.CrossEntropy(logits, y);
        AssertClose(f.GetProperty("loss").GetDouble(), loss, DType.Float64, "loss");
        var handles = model.NamedParameterHandles();
        var names = handles.Select(h => h.Name).ToArray();
        var grads = Autograd.Grad([loss], handles.Select(h => h.Parameter.Data).ToArray());
        AssertGradientsClose(names, names.Select(n => FixtureArray.Parse(f.GetProperty("grads").GetProperty(n)).Values).ToArray(),
            grads.Select(gr => gr!.ToDoubleArray()).ToArray(), Float64Tolerance, "dL/d");
        foreach (var (name, buffer) in model.NamedBufferHandles())
        {
            var expected = f.GetProperty("buffers_after_forward").GetProperty(name);
            if (expected.ValueKind == JsonValueKind.Number)
            {
                Assert.Equal(expected.GetInt64(), buffer.Data!.ToInt64Array()[0]);
            }
            else
            {
                AssertClose(FixtureArray.Parse(expected), buffer.Data, name);
            }
        }
    }

    [Fact]
    public void ConvNet_OneStepMamlMetaGradientMatchesTorch()
    {
        RequireDevice();
        var f = ConvFixture.Root.GetProperty("convnet");
        var model = FixtureNet(f);
        var x = Load(FixtureArray.Parse(f.GetProperty("x")));
        var y = Load(FixtureArray.Parse(f.GetProperty("y")));
        var xq = Load(FixtureArray.Parse(f.GetProperty("x_query")));
        var yq = Load(FixtureArray.Parse(f.GetProperty("y_query")));
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = f.GetProperty("lr").GetDouble() });

        using var context = InnerLoop.Create(model, opt, copyInitialWeights: false);
        var (fmodel, diffopt) = context;
        diffopt.Step(F.CrossEntropy(fmodel.Forward(x), y));
        var queryLoss = F.CrossEntropy(fmodel.Forward(xq), yq);
        AssertClose(f.GetProperty("query_loss").GetDouble(), queryLoss, DType.Float64, "query loss");
        queryLoss.Backward();
        var handles = model.NamedParameterHandles();
        var names = handles.Select(h => h.Name).ToArray();
        AssertGradientsClose(names, names.Select(n => FixtureArray.Parse(f.GetProperty("meta_grads").GetProperty(n)).Values).ToArray(),
            handles.Select(h => h.Parameter.Grad!.ToDoubleArray()).ToArray(), Float64Tolerance, "meta-gradient of");
        // The patched module owns its buffers: the model's own running statistics are untouched.
        Assert.All(model.NamedBuffers(), b => Assert.Equal(b.Name.EndsWith("running_var", StringComparison.Ordinal) ? 1.0 : 0.0, b.Value.ToDoubleArray().Max()));
    }

    /// <summary>
    /// The generator's LCG (gen_conv_fixtures.py): s = s·a + c mod 2⁶⁴, u = ((s ≫ 40) - 2²³)/2²³,
    /// value = u·scale + offset. Dyadic rationals, so both sides compute the same bits.
    /// </summary>
    private Tensor LcgTensor(JsonElement lcg, int[] shape, ulong seed, double scale, double offset)
    {
        ulong multiplier = lcg.GetProperty("multiplier").GetUInt64(), increment = lcg.GetProperty("increment").GetUInt64();
        int n = shape.Aggregate(1, (a, b) => a * b);
        var values = new double[n];
        ulong s = seed;
        for (int i = 0; i < n; i++)
        {
            s = unchecked((s * multiplier) + increment);
            values[i] = (((long)(s >> 40) - (1L << 23)) / (double)(1 << 23) * scale) + offset;
        }
        return Tensor.FromArray(values, new Shape(shape), Device);
    }

    private Tensor LcgInput(JsonElement lcg, JsonElement spec) =>
        LcgTensor(lcg, spec.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray(), spec.GetProperty("seed").GetUInt64(),
            spec.GetProperty("scale").GetDouble(), spec.GetProperty("offset").GetDouble());

    /// <summary>
    /// higher's Omniglot net at its real width (64 channels), 5-way 1-shot, float64: the support losses
    /// of 2 differentiable SGD steps (lr 0.1), the query loss and the meta-gradient w.r.t. every
    /// time-0 parameter (second order through both steps) match PyTorch's at 1e-10.
    /// </summary>
    [Fact]
    public void ConvNet_TwoStepMamlMetaGradientAt64ChannelsMatchesTorch()
    {
        RequireDevice();
        var f = ConvFixture.Root.GetProperty("maml_omniglot");
        var lcg = f.GetProperty("lcg");
        var model = BuildConvNet(f.GetProperty("channels").GetInt32());
        model.To(DType.Float64).To(Device);
        var names = f.GetProperty("parameter_names").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var handles = model.NamedParameterHandles();
        Assert.Equal(names, handles.Select(h => h.Name).ToArray());
        foreach (var (name, handle) in handles)
        {
            var init = f.GetProperty("parameter_init").GetProperty(name);
            handle.Data = LcgTensor(lcg, handle.Data.Shape.ToArray(), init.GetProperty("seed").GetUInt64(), init.GetProperty("scale").GetDouble(),
                init.GetProperty("offset").GetDouble());
        }
        var x = LcgInput(lcg, f.GetProperty("support_x"));
        var xq = LcgInput(lcg, f.GetProperty("query_x"));
        var y = Load(FixtureArray.Parse(f.GetProperty("y")));
        var yq = Load(FixtureArray.Parse(f.GetProperty("y_query")));
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = f.GetProperty("lr").GetDouble() });

        using var context = InnerLoop.Create(model, opt, copyInitialWeights: false);
        var (fmodel, diffopt) = context;
        int step = 0;
        foreach (var expectedLoss in f.GetProperty("support_losses").EnumerateArray())
        {
            var loss = F.CrossEntropy(fmodel.Forward(x), y);
            AssertClose(expectedLoss.GetDouble(), loss, DType.Float64, $"support loss at step {step++}");
            diffopt.Step(loss);
        }
        Assert.Equal(f.GetProperty("steps").GetInt32(), step);
        var queryLoss = F.CrossEntropy(fmodel.Forward(xq), yq);
        AssertClose(f.GetProperty("query_loss").GetDouble(), queryLoss, DType.Float64, "query loss");
        queryLoss.Backward();
        AssertGradientsClose(names, names.Select(n => FixtureArray.Parse(f.GetProperty("meta_grads").GetProperty(n)).Values).ToArray(),
            handles.Select(h => h.Parameter.Grad!.ToDoubleArray()).ToArray(), Float64Tolerance, "2-step meta-gradient of");
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void ConvNet_PatchedForwardWithFastWeightsIsBitwiseTheFunctionalNet(DType dtype)
    {
        RequireDevice();
        var g = new Generator(7);
        var model = BuildConvNet(64, g);
        model.To(dtype).To(Device);
        var x = Tensor.Rand([4, 1, 28, 28], dtype, g, Device);
        var fmodel = Patch.Monkeypatch(model);
        // Fast weights that differ from the module's, so using the wrong ones would show.
        var fast = model.Parameters()
            .Select(p => (p.Detach() * 1.25 + Tensor.Normal(p.Shape, 0, 0.01, dtype, g, Device)).WithRequiresGrad())
            .ToArray();

        var patched = fmodel.Forward(x, fast);
        var functional = FunctionalConvNet(fast, x);
        Assert.Equal(functional.Shape, patched.Shape);
        Assert.Equal(functional.ToDoubleArray(), patched.ToDoubleArray());

        var patchedGrads = Autograd.Grad([patched.Square().Sum()], fast);
        var functionalGrads = Autograd.Grad([functional.Square().Sum()], fast);
        for (int i = 0; i < fast.Length; i++)
        {
            Assert.Equal(functionalGrads[i]!.ToDoubleArray(), patchedGrads[i]!.ToDoubleArray());
        }

        // Training-mode batch norm wrote the functional copies of the buffers, not the model's.
        var running = fmodel.Buffers().First(b => b.Name == "1.running_mean").Value!;
        Assert.Contains(running.ToDoubleArray(), v => v != 0);
        Assert.All(((BatchNorm2d)model[1]).RunningMean.Data!.ToDoubleArray(), v => Assert.Equal(0.0, v));
    }

    [Fact]
    public void ConvNet_TenStepSgdUnrollMatchesManualUnroll()
    {
        RequireDevice();
        const int Steps = 10;
        const double Lr = 0.1;
        var g = new Generator(11);
        // 16 channels: the architecture is the real one, and the 10-step second-order unroll stays quick.
        var model = BuildConvNet(16, g);
        model.To(DType.Float64).To(Device);
        var x = Tensor.Rand([5, 1, 28, 28], DType.Float64, g, Device);
        var y = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4 }, null, Device);
        var xq = Tensor.Rand([5, 1, 28, 28], DType.Float64, g, Device);
        var initial = model.Parameters().ToArray();
        var names = model.NamedParameterHandles().Select(h => h.Name).ToArray();

        // Manual unroll with the functional net.
        var manualLosses = new double[Steps];
        var manualGrads = new Tensor[Steps][];
        var w = initial;
        for (int t = 0; t < Steps; t++)
        {
            var loss = F.CrossEntropy(FunctionalConvNet(w, x), y);
            manualLosses[t] = loss.Item();
            var grads = Autograd.Grad([loss], w, createGraph: true);
            manualGrads[t] = grads.Select(gr => gr!.Detach()).ToArray();
            w = w.Select((wi, i) => wi - (grads[i]! * Lr)).ToArray();
        }
        var manualMeta = Autograd.Grad([FunctionalConvNet(w, xq).Square().Sum()], initial);

        // The same unroll through higher's inner loop.
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = Lr });
        using var context = InnerLoop.Create(model, opt, copyInitialWeights: false);
        var (fmodel, diffopt) = context;
        for (int t = 0; t < Steps; t++)
        {
            var loss = F.CrossEntropy(fmodel.Forward(x), y);
            Numeric.AssertClose([manualLosses[t]], [loss.Item()], Float64Tolerance, $"loss at step {t}");
            var before = fmodel.FastParams;
            var after = diffopt.Step(loss);
            // The step's gradient, recovered from the update: (w_t - w_{t+1}) / lr (so a looser tolerance).
            var stepGrads = after.Select((a, i) => ((before[i].Detach() - a.Detach()) / Lr).ToDoubleArray()).ToArray();
            AssertGradientsClose(names, manualGrads[t].Select(gr => gr.ToDoubleArray()).ToArray(), stepGrads, 1e-8, $"step {t} gradient of");
        }
        for (int i = 0; i < w.Length; i++)
        {
            Numeric.AssertClose(w[i].ToDoubleArray(), fmodel.FastParams[i].ToDoubleArray(), Float64Tolerance, $"{names[i]} after {Steps} steps");
        }
        var meta = Autograd.Grad([fmodel.Forward(xq).Square().Sum()], initial);
        AssertGradientsClose(names, manualMeta.Select(gr => gr!.ToDoubleArray()).ToArray(), meta.Select(gr => gr!.ToDoubleArray()).ToArray(),
            Float64Tolerance, "meta-gradient of");
    }
}

/// <summary>The conv-net tests on the managed CPU backend.</summary>
public sealed class ConvNetTestsOnReference : ConvNetTests
{
    protected override Device Device => Device.Cpu;
}
