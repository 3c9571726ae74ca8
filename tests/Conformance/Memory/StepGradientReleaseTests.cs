using Higher.Functional;
using Higher.Nn;
using Higher.Optim;
using Higher.Reference;

namespace Higher.Conformance.Memory;

/// <summary>
/// A differentiable optimizer's step takes the gradients from the engine, uses them and gives each
/// back to the pool (now, or when the last tape node saving it is released) unless something still
/// holds it: a state tensor (SGD's first momentum buffer is the gradient itself), or the user, who saw
/// them through a gradient callback. Each test runs a twin through an identity callback (which keeps
/// every gradient): the values are the same bits, and the pool holds exactly the gradients' bytes more.
/// </summary>
public sealed class StepGradientReleaseTests
{
    private static readonly GradCallback Identity = static grads => grads;

    private sealed record Run(double[][] FastParams, double[][] MetaGrads, long BytesInUse);

    private static Run Maml(Func<Module, Optimizer> inner, int steps, bool keepGrads, bool queryBackward, int hidden = 0)
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var g = new Generator(21);
        // hidden extra Linear(8, 8) + Relu layers: 2 more parameters each.
        var layers = new List<Module> { new Linear(3, 8, generator: g), new Relu() };
        for (int i = 0; i < hidden; i++)
        {
            layers.Add(new Linear(8, 8, generator: g));
            layers.Add(new Relu());
        }
        layers.Add(new Linear(8, 2, generator: g));
        var model = new Sequential(layers);
        model.To(device);
        var x = Tensor.Randn([6, 3], DType.Float32, g, device);
        var y = Tensor.Randn([6, 2], DType.Float32, g, device);
        var ctx = InnerLoop.Create(model, inner(model), copyInitialWeights: false);
        var (fmodel, diffopt) = ctx;
        long before = pool.Statistics.BytesInUse;
        for (int k = 0; k < steps; k++)
        {
            diffopt.Step(F.MseLoss(fmodel.Forward(x), y), gradCallback: keepGrads ? Identity : null);
        }
        double[][] metaGrads = [];
        if (queryBackward)
        {
            F.MseLoss(fmodel.Forward(x * 2), y).Backward();
            metaGrads = [.. model.Parameters().Select(p => p.Grad!.ToDoubleArray())];
        }
        long inUse = pool.Statistics.BytesInUse - before;
        var fast = fmodel.FastParams.Select(p => p.ToDoubleArray()).ToArray();
        GC.KeepAlive(ctx);
        return new(fast, metaGrads, inUse);
    }

    private static long GradientBytes(int steps, int hidden = 0) =>
        steps * (new[] { 3 * 8, 8, 8 * 2, 2 }.Sum(n => CpuBufferPool.SizeClass(n * sizeof(float)))
            + (hidden * (CpuBufferPool.SizeClass(8 * 8 * sizeof(float)) + CpuBufferPool.SizeClass(8 * sizeof(float)))));

    private static void AssertSameValues(Run a, Run b)
    {
        Assert.Equal(a.FastParams.Length, b.FastParams.Length);
        for (int i = 0; i < a.FastParams.Length; i++)
        {
            Assert.Equal(a.FastParams[i], b.FastParams[i]);
        }
        Assert.Equal(a.MetaGrads.Length, b.MetaGrads.Length);
        for (int i = 0; i < a.MetaGrads.Length; i++)
        {
            Assert.Equal(a.MetaGrads[i], b.MetaGrads[i]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void SgdSteps_GiveTheirGradientsBack_AtOnce(int steps)
    {
        static Optimizer Sgd(Module m) => new Sgd(m.Parameters(), new SgdOptions { Lr = 0.1 });
        var released = Maml(Sgd, steps, keepGrads: false, queryBackward: false);
        var kept = Maml(Sgd, steps, keepGrads: true, queryBackward: false);
        AssertSameValues(released, kept);
        Assert.Equal(GradientBytes(steps), kept.BytesInUse - released.BytesInUse);
    }

    [Fact]
    public void ManyParameters_GiveTheirGradientsBack_AsFew()
    {
        // 2 + 2·16 = 34 parameters: more than the step compares pairwise, so it finds shared storages with a set.
        static Optimizer Sgd(Module m) => new Sgd(m.Parameters(), new SgdOptions { Lr = 0.1 });
        var released = Maml(Sgd, 2, keepGrads: false, queryBackward: true, hidden: 16);
        var kept = Maml(Sgd, 2, keepGrads: true, queryBackward: true, hidden: 16);
        AssertSameValues(released, kept);
        Assert.Equal(GradientBytes(2, hidden: 16), kept.BytesInUse - released.BytesInUse);
    }

    [Fact]
    public void SgdWithMomentum_KeepsTheGradientThatIsItsBuffer_AndReleasesTheRest()
    {
        static Optimizer Sgd(Module m) => new Sgd(m.Parameters(), new SgdOptions { Lr = 0.1, Momentum = 0.9 });
        // The first step's gradients become the momentum buffers (kept); the second step's are used and released.
        var released = Maml(Sgd, 2, keepGrads: false, queryBackward: true);
        var kept = Maml(Sgd, 2, keepGrads: true, queryBackward: true);
        AssertSameValues(released, kept);
        Assert.True(kept.BytesInUse - released.BytesInUse >= GradientBytes(1), $"{kept.BytesInUse} vs {released.BytesInUse}");
    }

    [Fact]
    public void AdamsSavedGradients_GoBackWhenTheQueryBackwardFreesTheGraph()
    {
        static Optimizer Adam(Module m) => new Adam(m.Parameters(), new AdamOptions { Lr = 0.1 });
        var released = Maml(Adam, 2, keepGrads: false, queryBackward: true);
        var kept = Maml(Adam, 2, keepGrads: true, queryBackward: true);
        AssertSameValues(released, kept);
        Assert.Equal(GradientBytes(2), kept.BytesInUse - released.BytesInUse);
    }
}
