using BenchmarkDotNet.Attributes;

namespace Higher.Benchmarks;

/// <summary>
/// An MLP 1-40-40-1 (ReLU) on 10 points: forward, backward with createGraph, and the double
/// backward of the gradient norm — the unit of work of a MAML inner step.
/// </summary>
[MemoryDiagnoser]
public class MlpBenchmarks
{
    private Tensor _x = null!, _y = null!;
    private Tensor[] _params = null!;

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(2);
        _x = Tensor.Uniform([10, 1], -5, 5, generator: g);
        _y = _x.Sin();
        _params =
        [
            Tensor.Uniform([40, 1], -1, 1, generator: g).WithRequiresGrad(),
            Tensor.Uniform([40], -1, 1, generator: g).WithRequiresGrad(),
            Tensor.Uniform([40, 40], -0.15, 0.15, generator: g).WithRequiresGrad(),
            Tensor.Uniform([40], -0.15, 0.15, generator: g).WithRequiresGrad(),
            Tensor.Uniform([1, 40], -0.15, 0.15, generator: g).WithRequiresGrad(),
            Tensor.Uniform([1], -0.15, 0.15, generator: g).WithRequiresGrad(),
        ];
    }

    private Tensor Loss()
    {
        var h = Tensor.Linear(_x, _params[0], _params[1]).Relu();
        h = Tensor.Linear(h, _params[2], _params[3]).Relu();
        return F.MseLoss(Tensor.Linear(h, _params[4], _params[5]), _y);
    }

    [Benchmark]
    public Tensor Forward()
    {
        using var _ = Autograd.NoGrad();
        return Loss();
    }

    [Benchmark]
    public Tensor?[] ForwardBackward() => Autograd.Grad([Loss()], _params);

    /// <summary>Forward, gradients with a graph, then the gradient of Σ‖∂L/∂θ‖² with respect to θ.</summary>
    [Benchmark]
    public Tensor?[] ForwardBackwardDoubleBackward()
    {
        var grads = Autograd.Grad([Loss()], _params, createGraph: true);
        Tensor norm = grads[0]!.Square().Sum();
        for (int i = 1; i < grads.Length; i++)
        {
            norm += grads[i]!.Square().Sum();
        }
        return Autograd.Grad([norm], _params);
    }
}
