using Higher.Conformance.Memory;
using Higher.Optim;

namespace Higher.Conformance.Optim;

/// <summary>
/// Adam's and AdamW's Step run their update as one backend kernel (IBackend.AdamUpdate): it must give
/// the bits of the composed rule (a subclass of Adam, which takes the composed path) for every option,
/// both float dtypes and several steps, state included; tensor hyperparameters keep the composed path,
/// and so does every backend without its own kernel (the interface's default runs the separate kernels).
/// </summary>
public sealed class FusedAdamTests
{
    // The composed rule: a subclass of Adam is never fused (it may override Update).
    private sealed class ComposedAdam(IEnumerable<Tensor> ps, AdamOptions o, bool decoupled)
        : Adam([new ParamGroup(ps)], o.ToDictionary(0))
    {
        protected override bool DecoupledWeightDecay => decoupled;
    }

    public static TheoryData<bool, bool, bool, double, DType> Options()
    {
        var data = new TheoryData<bool, bool, bool, double, DType>();
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            foreach (bool decoupled in new[] { false, true })
            {
                foreach (bool amsgrad in new[] { false, true })
                {
                    foreach (bool maximize in new[] { false, true })
                    {
                        foreach (double wd in new[] { 0.0, 0.1 })
                        {
                            data.Add(decoupled, amsgrad, maximize, wd, dtype);
                        }
                    }
                }
            }
        }
        return data;
    }

    private static (Tensor[] Params, Optimizer Opt) Make(bool fused, bool decoupled, bool amsgrad, bool maximize, double wd, DType dtype, Device device)
    {
        var g = new Generator(31);
        Tensor[] ps = [Tensor.Randn([7, 5], dtype, g, device).WithRequiresGrad(), Tensor.Randn([1000], dtype, g, device).WithRequiresGrad()];
        var o = new AdamOptions { Lr = 0.05, Betas = (0.8, 0.95), Eps = 1e-6, WeightDecay = wd, Amsgrad = amsgrad, Maximize = maximize };
        Optimizer opt = fused ? (decoupled ? new AdamW(ps, o) : new Adam(ps, o)) : new ComposedAdam(ps, o, decoupled);
        return (ps, opt);
    }

    [Theory]
    [MemberData(nameof(Options))]
    public void FusedStep_IsBitForBitTheComposedRule(bool decoupled, bool amsgrad, bool maximize, double wd, DType dtype)
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var (fp, fused) = Make(true, decoupled, amsgrad, maximize, wd, dtype, device);
        var (cp, composed) = Make(false, decoupled, amsgrad, maximize, wd, dtype, device);
        var g = new Generator(32);
        for (int step = 0; step < 4; step++)
        {
            for (int i = 0; i < fp.Length; i++)
            {
                // Gradients with zeros, tiny and large values (a zero second moment, the sqrt's edge).
                var grad = Tensor.Randn(fp[i].Shape, dtype, g, device) * (step == 1 ? 0 : Math.Pow(10, step - 2));
                fp[i].Grad = grad;
                cp[i].Grad = grad.Detach() * 1;
            }
            long rents = pool.Statistics.Rents;
            fused.Step();
            long fusedRents = pool.Statistics.Rents - rents;
            composed.Step();
            for (int i = 0; i < fp.Length; i++)
            {
                Assert.Equal(cp[i].ToDoubleArray(), fp[i].ToDoubleArray());
                foreach (var key in new[] { "exp_avg", "exp_avg_sq" }.Concat(amsgrad ? ["max_exp_avg_sq"] : []))
                {
                    Assert.Equal(composed.StateFor(cp[i])[key].ToDoubleArray(), fused.StateFor(fp[i])[key].ToDoubleArray());
                }
                Assert.Equal(composed.StateFor(cp[i]).Step, fused.StateFor(fp[i]).Step);
            }
            // One kernel's outputs per parameter (three or four arrays), and the state's zeros on the first step.
            int outputs = amsgrad ? 4 : 3;
            Assert.Equal(fp.Length * (outputs + (step == 0 ? outputs - 1 : 0)), fusedRents);
        }
    }

    [Fact]
    public void ATensorHyperparameter_TakesTheComposedRule()
    {
        var p = Tensor.FromArray(new double[] { 1, -2, 3 }, [3]).WithRequiresGrad();
        var q = Tensor.FromArray(new double[] { 1, -2, 3 }, [3]).WithRequiresGrad();
        var adam = new Adam([p], new AdamOptions { Lr = 0.1 });
        var composed = new ComposedAdam([q], new AdamOptions { Lr = 0.1 }, decoupled: false);
        var hyper = new GroupHyperParameters(adam.ParamGroups[0]);
        Assert.NotNull(adam.FusedUpdate(p.Detach(), Tensor.OnesLike(p), new ParamState(), hyper));
        var tensorLr = new TensorLr(hyper, Tensor.FromArray(new double[] { 0.1 }, []));
        Assert.Null(adam.FusedUpdate(p.Detach(), Tensor.OnesLike(p), new ParamState(), tensorLr));
        p.Grad = Tensor.FromArray(new double[] { 0.5, 0, -4 }, [3]);
        q.Grad = Tensor.FromArray(new double[] { 0.5, 0, -4 }, [3]);
        adam.Step();
        composed.Step();
        Assert.Equal(q.ToDoubleArray(), p.ToDoubleArray());
    }

    private sealed class TensorLr(IHyperParameters inner, Tensor lr) : IHyperParameters
    {
        public HyperValue this[string name] => name == "lr" ? new HyperValue(lr) : inner[name];

        public bool Flag(string name) => inner.Flag(name);
    }

    [Fact]
    public void TheFusedKernel_IsBitForBitTheInterfacesDefault()
    {
        // A backend without its own kernel runs the default (ComposedKernels): the separate kernels one after another.
        var backend = Tensor.Zeros([1]).Backend;
        var g = new Generator(33);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            foreach (var s in new[]
            {
                new AdamScalars(0.05, 0.8, 0.95, 1e-6, 0, false, false, false, 1),
                new AdamScalars(0.05, 0.8, 0.95, 1e-6, 0.1, false, true, true, 3),
                new AdamScalars(0.05, 0.8, 0.95, 1e-6, 0.1, true, true, false, 7),
            })
            {
                const int n = 257;
                var (p, gr, m) = (Tensor.Randn([n], dtype, g), Tensor.Randn([n], dtype, g), Tensor.Randn([n], dtype, g));
                var (v, vmax) = (Tensor.Randn([n], dtype, g).Abs(), Tensor.Randn([n], dtype, g).Abs());
                Tensor[] Outs() => [.. Enumerable.Range(0, 4).Select(_ => Tensor.Empty(backend, dtype, new Shape(n)))];
                var fused = Outs();
                var composed = Outs();
                backend.AdamUpdate(s, p.Storage, gr.Storage, m.Storage, v.Storage, vmax.Storage, fused[0].Storage, fused[1].Storage, fused[2].Storage, fused[3].Storage);
                ComposedKernels.AdamUpdate(backend, s, p.Storage, gr.Storage, m.Storage, v.Storage, vmax.Storage,
                    composed[0].Storage, composed[1].Storage, composed[2].Storage, composed[3].Storage);
                for (int k = 0; k < (s.Amsgrad ? 4 : 3); k++)
                {
                    Assert.Equal(composed[k].ToDoubleArray(), fused[k].ToDoubleArray());
                }
            }
        }
    }
}
