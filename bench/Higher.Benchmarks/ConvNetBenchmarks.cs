using BenchmarkDotNet.Attributes;
using Higher.Nn;

namespace Higher.Benchmarks;

/// <summary>
/// higher's conv net (3 × [conv3x3 64, BatchNorm2d, ReLU, maxpool 2] + Linear(64, 5)) on a batch
/// of 25 28×28 images: forward, and forward + gradients of every parameter.
/// </summary>
[MemoryDiagnoser]
public class ConvNetBenchmarks
{
    private Sequential _model = null!;
    private Tensor _x = null!, _y = null!;
    private Tensor[] _params = null!;

    [Params(DType.Float32)]
    public DType DType { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(3);
        var layers = new List<Module>();
        for (int i = 0; i < 3; i++)
        {
            layers.Add(new Conv2d(i == 0 ? 1 : 64, 64, 3, generator: g));
            layers.Add(new BatchNorm2d(64, momentum: 1));
            layers.Add(new Relu());
            layers.Add(new MaxPool2d(2, 2));
        }
        layers.Add(new Flatten());
        layers.Add(new Linear(64, 5, generator: g));
        _model = new Sequential(layers);
        _model.To(DType);
        _x = Tensor.Rand([25, 1, 28, 28], DType, g);
        _y = Tensor.FromArray(Enumerable.Range(0, 25).Select(i => (long)(i % 5)).ToArray());
        _params = _model.Parameters().ToArray();
    }

    [Benchmark]
    public Tensor Forward()
    {
        using var _ = Autograd.NoGrad();
        return _model.Forward(_x);
    }

    [Benchmark]
    public Tensor?[] ForwardBackward() => Autograd.Grad([F.CrossEntropy(_model.Forward(_x), _y)], _params);
}
