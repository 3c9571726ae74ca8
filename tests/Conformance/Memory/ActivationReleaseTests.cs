using Higher.Nn;
using Higher.Reference;

namespace Higher.Conformance.Memory;

/// <summary>
/// A <see cref="Sequential"/> of Higher.Nn's own layers frees each activation as soon as nothing can
/// read it: at once when no tape node saved it, and when the backward pass releases the last node
/// saving it otherwise; composites free their own intermediates the same way (a convolution's output
/// before its bias, batch norm's centred input, max-pool's indices). What the caller passed in, what a
/// module of the caller's own kept, and what the call returns are never touched. Measured on a private
/// pool, whose bytes in use count every array until its storage is released.
/// </summary>
public sealed class ActivationReleaseTests
{
    private const int Batch = 16, Size = 32, Channels = 8;

    // conv → [16, 8, 30, 30]: 115,200 floats, 450 KiB per activation of the first block.
    private static readonly long Activation = CpuBufferPool.SizeClass(Batch * Channels * 30 * 30 * sizeof(float));

    private static Module[] Layers(Device device, Module? middle = null)
    {
        var g = new Generator(3);
        var layers = new List<Module>
        {
            new Conv2d(3, Channels, 3, generator: g), new BatchNorm2d(Channels), new Relu(),
        };
        if (middle is not null)
        {
            layers.Add(middle);
        }
        layers.AddRange([new MaxPool2d(2), new Conv2d(Channels, 4, 3, generator: g), new Tanh()]);
        foreach (var m in layers)
        {
            m.To(device);
        }
        return [.. layers];
    }

    private static Tensor Input(Device device) => Tensor.Rand([Batch, 3, Size, Size], DType.Float32, new Generator(4), device);

    [Fact]
    public void WithoutGrad_OnlyTheOutputOutlivesTheForward()
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var net = new Sequential(Layers(device));
        var x = Input(device);
        long before = pool.Statistics.BytesInUse;
        Tensor y;
        using (Autograd.NoGrad())
        {
            y = net.Forward(x);
        }
        long grown = pool.Statistics.BytesInUse - before;
        long output = CpuBufferPool.SizeClass(y.Numel * sizeof(float));
        // The block's five full-size tensors (conv before and after its bias, batch norm's centred input
        // and output, the ReLU) and the pool's indices are gone; what is left besides the output is
        // per-channel (batch-norm statistics and the running buffers that replaced the old ones).
        Assert.True(grown - output < Activation / 8, $"{(grown - output) / (double)Activation:F2} activations of the forward outlived it");
        Assert.False(x.IsReleased);
        Assert.False(y.IsReleased);
    }

    [Fact]
    public void WithGrad_SavedActivationsGo_WhenTheBackwardReleasesTheirNodes_AndTheGradientsAreUnchanged()
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var layers = Layers(device);
        var net = new Sequential(layers);
        var x = Input(device);
        long before = pool.Statistics.BytesInUse;
        var loss = net.Forward(x).Square().Sum();
        long afterForward = pool.Statistics.BytesInUse - before;
        // Saved for the backward: batch norm's centred input (one activation), the pool's int64 indices (half of
        // one) and the ReLU's output, which runs after the pool (a quarter): 1.75 activations, plus the rest. A
        // ReLU run before the pool would save a whole activation more.
        Assert.True(afterForward >= 1.75 * Activation, $"the forward kept only {afterForward / (double)Activation:F2} activations");
        Assert.True(afterForward < 2.5 * Activation, $"the forward kept {afterForward / (double)Activation:F2} activations: a full-size ReLU output among them");
        loss.Backward();
        long left = pool.Statistics.BytesInUse - before;
        long grads = net.Parameters().Sum(p => CpuBufferPool.SizeClass(p.Grad!.Numel * sizeof(float)));
        Assert.True(left - grads < Activation / 4, $"{(left - grads) / (double)Activation:F2} activations outlived the backward");

        // The same layers applied one by one (no Sequential, nothing freed early): the same gradients, bit for bit.
        var freed = net.Parameters().Select(p => p.Grad!.ToFloatArray()).ToArray();
        net.ZeroGrad();
        var h = x;
        foreach (var m in layers)
        {
            h = m.Forward(h);
        }
        h.Square().Sum().Backward();
        var kept = net.Parameters().Select(p => p.Grad!.ToFloatArray()).ToArray();
        Assert.Equal(kept.Length, freed.Length);
        for (int i = 0; i < kept.Length; i++)
        {
            Assert.Equal(kept[i], freed[i]);
        }
    }

    /// <summary>A module of the caller's own that keeps its input: Sequential must not free what it kept.</summary>
    private sealed class Keeper(bool passThrough = false) : Module
    {
        public Tensor? Seen { get; private set; }

        public override Tensor Forward(Tensor input)
        {
            Seen = input;
            return passThrough ? input : input * 1.0;
        }
    }

    [Fact]
    public void AnActivationAModuleOfTheCallersKept_StaysReadable()
    {
        var (device, _) = TensorScopeTests.PrivateDevice();
        var keeper = new Keeper();
        var net = new Sequential(Layers(device, keeper));
        var x = Input(device);
        using (Autograd.NoGrad())
        {
            net.Forward(x);
        }
        // The ReLU's output went into the keeper, and the keeper's output into the pool: neither is freed.
        Assert.False(keeper.Seen!.IsReleased);
        Assert.True(keeper.Seen.ToFloatArray().All(v => v >= 0));
    }

    [Fact]
    public void TheInputAndItsViews_AreNeverFreed()
    {
        var (device, _) = TensorScopeTests.PrivateDevice();
        var g = new Generator(5);
        // Flatten's output is a view of the caller's input; Identity returns its input itself.
        var net = new Sequential(new Flatten(), new Identity(), new Linear(3 * Size * Size, 4, generator: g), new Relu());
        net.To(device);
        var x = Input(device);
        using (Autograd.NoGrad())
        {
            net.Forward(x);
        }
        Assert.False(x.IsReleased);
        Assert.Equal(Input(device).ToFloatArray(), x.ToFloatArray());
    }

    [Fact]
    public void ANestedSequentialHoldingAModuleOfTheCallers_FreesNothingAroundIt()
    {
        var (device, _) = TensorScopeTests.PrivateDevice();
        var keeper = new Keeper(passThrough: true);
        var net = new Sequential(new Relu(), new Sequential(new Tanh(), keeper), new Sigmoid());
        net.To(device);
        var x = Input(device);
        using (Autograd.NoGrad())
        {
            net.Forward(x);
        }
        // The keeper kept the Tanh's output and returned it as the inner Sequential's output: the outer one
        // must not free it after the Sigmoid, since the inner one holds a module of the caller's.
        Assert.False(keeper.Seen!.IsReleased);
        Assert.True(keeper.Seen.ToFloatArray().All(v => v is >= 0 and < 1));
    }
}
