using BenchmarkDotNet.Attributes;

namespace Higher.Benchmarks;

/// <summary>
/// Per-op cost on the tensor sizes of meta-learning inner loops, where engine overhead
/// (allocation, dispatch, tape bookkeeping) matters as much as arithmetic.
/// </summary>
[MemoryDiagnoser]
public class SmallOpBenchmarks
{
    private Tensor _a = null!, _b = null!, _x = null!, _w = null!, _xg = null!, _bg = null!;

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(1);
        _a = Tensor.Randn([10, 40], generator: g);
        _b = Tensor.Randn([10, 40], generator: g);
        _x = Tensor.Randn([10, 40], generator: g);
        _w = Tensor.Randn([40, 40], generator: g);
        _xg = Tensor.Randn([10, 40], generator: g).WithRequiresGrad();
        _bg = Tensor.Randn([10, 40], generator: g).WithRequiresGrad();
    }

    /// <summary>Elementwise add of two [10, 40] float32 tensors, no tape.</summary>
    [Benchmark]
    public Tensor Add_10x40() => _a + _b;

    /// <summary>The same add with both operands requiring grad: the tape records a node.</summary>
    [Benchmark]
    public Tensor Add_10x40_Recorded() => _xg + _bg;

    /// <summary>[10, 40]·[40, 40] float32.</summary>
    [Benchmark]
    public Tensor MatMul_10x40x40() => Tensor.MatMul(_x, _w);
}
