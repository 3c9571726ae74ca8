using System.Text.Json;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.User;

/// <summary>The calls a PyTorch or TorchSharp user types first, and what they give.</summary>
public sealed class ApiHabitTests
{
    private static JsonElement Model
    {
        get
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "safetensors.json")));
            return doc.RootElement.GetProperty("model").Clone();
        }
    }

    [Fact]
    public void ShapesAsIntegers_AsTorchRandn()
    {
        Assert.Equal(new Shape(10, 1), Tensor.Randn(10, 1).Shape);
        Assert.Equal(DType.Float32, Tensor.Randn(10, 1).DType);
        Assert.Equal(new Shape(4), Tensor.Rand(4).Shape);
        Assert.Equal(new double[6], Tensor.Zeros(2, 3).ToDoubleArray());
        Assert.Equal(new Shape(2, 3, 4), Tensor.Ones(2, 3, 4).Shape);
        Assert.All(Tensor.Rand(1000).ToDoubleArray(), v => Assert.InRange(v, 0, 1));
        // The Shape overloads still take a collection expression and their options.
        Assert.Equal(DType.Float64, Tensor.Zeros([2, 3], DType.Float64).DType);
        Assert.Contains("negative", Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, -1)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Grad_OfOneTensor_WithRespectToAnySequence()
    {
        var model = new Linear(3, 2, generator: new Generator(1));
        var x = Tensor.Randn([4, 3], generator: new Generator(2));
        var loss = model.Forward(x).Square().Sum();
        var grads = Autograd.Grad(loss, model.Parameters(), retainGraph: true);
        Assert.Equal(2, grads.Length);
        // Any IEnumerable: a lazy sequence gives the same gradients in the same order.
        var lazy = Autograd.Grad(loss, model.Parameters().Where(_ => true), retainGraph: true);
        loss.Backward();
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(model.Parameters()[i].Grad!.ToDoubleArray(), grads[i]!.ToDoubleArray());
            Assert.Equal(grads[i]!.ToDoubleArray(), lazy[i]!.ToDoubleArray());
        }
        var unused = Tensor.Ones([1]).WithRequiresGrad();
        var withUnused = Autograd.Grad(model.Forward(x).Sum(), [.. model.Parameters(), unused], allowUnused: true);
        Assert.Null(withUnused[2]);
    }

    [Fact]
    public void ParametersAreIndexable_AndTheMetaGradientLandsThere()
    {
        var model = new Linear(1, 1, generator: new Generator(1));
        var inner = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        var x = Tensor.FromArray(new float[] { 1, 2 }, [2, 1]);
        using (var ctx = InnerLoop.Create(model, inner, copyInitialWeights: false))
        {
            var (fmodel, diffopt) = ctx;
            diffopt.Step(F.MseLoss(fmodel.Forward(x), x * 2));
            F.MseLoss(fmodel.Forward(x), x * 2).Backward();
        }
        Assert.Equal(2, model.Parameters().Count);
        Assert.NotNull(model.Parameters()[0].Grad);
        Assert.NotNull(model.Parameters()[1].Grad);
    }

    [Fact]
    public void ToString_PrintsTheArchitectureAsTorch()
    {
        var m = Model;
        // Higher's classes keep their C# names where torch's differ (ReLU → Relu, LSTM → Lstm).
        string Torch(string key) => m.GetProperty(key).GetString()!.Replace("ReLU()", "Relu()", StringComparison.Ordinal).Replace("LSTM(", "Lstm(", StringComparison.Ordinal);
        Assert.Equal(Torch("repr"), new Sequential(new Linear(3, 8), new BatchNorm1d(8), new Relu(), new Linear(8, 2)).ToString());
        Assert.Equal(Torch("lstm_repr"), new Lstm(4, 6, numLayers: 2, batchFirst: true).ToString());
        Assert.Equal(Torch("conv_repr"), new Sequential(new Conv2d(1, 32, 3, padding: 1), new MaxPool2d(2), new Dropout(0.25), new LayerNorm(10)).ToString());
        var nested = new Sequential(new Sequential(new Linear(1, 2)), new Tanh());
        Assert.Equal("Sequential(\n  (0): Sequential(\n    (0): Linear(in_features=1, out_features=2, bias=True)\n  )\n  (1): Tanh()\n)", nested.ToString());
    }
}
