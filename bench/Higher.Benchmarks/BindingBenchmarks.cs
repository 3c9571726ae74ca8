using BenchmarkDotNet.Attributes;
using Higher.Functional;
using Higher.Nn;

namespace Higher.Benchmarks;

/// <summary>
/// What the fast-weight binding costs a forward: a Linear(40, 40) on [10, 40] with the module's own
/// weights, inside a functional call's binding (the resolution of each parameter), and as a whole
/// functional forward (binding set up and torn down per call).
/// </summary>
[MemoryDiagnoser]
public class BindingBenchmarks
{
    private Linear _linear = null!;
    private FunctionalModule _fmodel = null!;
    private Tensor _x = null!;

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(1);
        _linear = new Linear(40, 40, generator: g);
        _fmodel = Patch.Monkeypatch(_linear);
        _x = Tensor.Randn([10, 40], generator: g);
    }

    /// <summary>The module's own weights, no binding in force.</summary>
    [Benchmark(Baseline = true)]
    public Tensor LinearForward_Unbound() => _linear.Forward(_x);

    /// <summary>Eight forwards inside one functional call: the per-forward cost of resolving bound weights.</summary>
    [Benchmark(OperationsPerInvoke = 8)]
    public Tensor LinearForward_Bound() => _fmodel.Call(m =>
    {
        Tensor y = null!;
        for (int i = 0; i < 8; i++)
        {
            y = m.Forward(_x);
        }
        return y;
    });

    [ThreadStatic]
    private static object? t_slot;

    private static readonly AsyncLocal<object?> AsyncSlot = new();

    /// <summary>100 reads of a [ThreadStatic] field: what the thread-local binding paid per resolved parameter.</summary>
    [Benchmark(OperationsPerInvoke = 100)]
    public int ThreadStaticRead()
    {
        t_slot = this;
        int n = 0;
        for (int i = 0; i < 100; i++)
        {
            n += t_slot is null ? 1 : 0;
        }
        return n;
    }

    /// <summary>100 reads of an AsyncLocal with a value set: what the flowing binding pays per resolved parameter.</summary>
    [Benchmark(OperationsPerInvoke = 100)]
    public int AsyncLocalRead()
    {
        AsyncSlot.Value = this;
        int n = 0;
        for (int i = 0; i < 100; i++)
        {
            n += AsyncSlot.Value is null ? 1 : 0;
        }
        return n;
    }

    /// <summary>One functional forward: the binding is made and removed around it.</summary>
    [Benchmark]
    public Tensor FunctionalForward() => _fmodel.Forward(_x);
}
