using Higher.Reference;

namespace Higher.Conformance.Memory;

/// <summary>
/// A backward pass returns what it alone made as soon as it is dead, without a scope and without
/// the garbage collector: the intermediate gradients between nodes, and (with createGraph) the
/// tensors its recorded nodes saved once a later backward has released those nodes. What it hands
/// out and what the user made are never touched. Measured on a private pool, whose bytes in use
/// count every array a storage holds until it is released.
/// </summary>
public sealed class BackwardReleaseTests
{
    private const int N = 1 << 18; // 1 MiB of float per tensor

    private static (Tensor X, Tensor W) Operands(Device device)
    {
        var g = new Generator(11);
        var x = (Tensor.Rand([N], DType.Float32, g, device) + 0.5).WithRequiresGrad();
        var w = Tensor.Full([N], 1.01, DType.Float32, device);
        return (x, w);
    }

    [Fact]
    public void ABackwardPass_FreesEachIntermediateGradient_AsSoonAsItIsDead()
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var (x, w) = Operands(device);
        const int depth = 30;
        var y = x;
        for (int i = 0; i < depth; i++)
        {
            y = y * w; // each node saves w only; its backward makes one new 1 MiB gradient
        }
        var loss = y.Sum();
        long before = pool.Statistics.BytesInUse;
        long size = CpuBufferPool.SizeClass(N * sizeof(float));
        loss.Backward();
        long peak = pool.Statistics.PeakBytesInUse - before;
        // Alive at once: the gradient coming in, the one going out, and the seed; never the chain of 30.
        Assert.True(peak <= 3 * size, $"the backward pass held {peak / (double)size:F1} gradients at once (chain of {depth})");
        Assert.False(x.Grad!.IsReleased);
        Assert.Equal(Math.Pow(1.01f, depth), x.Grad.ToDoubleArray()[12345], 1e-5);
        // After the pass, only x.Grad is new.
        Assert.Equal(before + size, pool.Statistics.BytesInUse);
    }

    [Fact]
    public void TensorsARecordedBackwardSaved_AreFreed_WhenALaterBackwardReleasesTheirNodes()
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var (x, w) = Operands(device);
        var y = x;
        for (int i = 0; i < 10; i++)
        {
            y = (y * w).Sin();
        }
        var loss = y.Sum();
        long size = CpuBufferPool.SizeClass(N * sizeof(float));
        long before = pool.Statistics.BytesInUse;
        var grad = Autograd.Grad(loss, x, createGraph: true);
        long afterInner = pool.Statistics.BytesInUse;
        // The recorded pass keeps what its nodes save (cosines, gradients) for the second derivative.
        Assert.True(afterInner - before >= 10 * size, $"the recorded pass kept only {(afterInner - before) / (double)size:F1} MiB");

        (grad * grad).Sum().Backward();
        long after = pool.Statistics.BytesInUse;
        // Left: the gradient handed out (still the caller's, intact), the caller's grad * grad, x.Grad,
        // and nothing of either pass.
        Assert.False(grad.IsReleased);
        Assert.False(x.Grad!.IsReleased);
        Assert.True(after - before <= 3 * size + 4096, $"{(after - before) / (double)size:F1} MiB of the passes survived them");

        // The values are those of a run that frees nothing (retainGraph keeps every node and what it saves).
        var (x2, w2) = Operands(device);
        var y2 = x2;
        for (int i = 0; i < 10; i++)
        {
            y2 = (y2 * w2).Sin();
        }
        var grad2 = Autograd.Grad(y2.Sum(), x2, createGraph: true);
        Autograd.Backward([(grad2 * grad2).Sum()], retainGraph: true);
        Assert.Equal(grad2.ToDoubleArray(), grad.ToDoubleArray());
        Assert.Equal(x2.Grad!.ToDoubleArray(), x.Grad.ToDoubleArray());
    }

    [Fact]
    public void GradientsTheCallerPassesIn_AndTheGraphsItRetains_AreNeverFreed()
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var (x, w) = Operands(device);
        var y = (x * w).Exp();
        var seed = Tensor.Full([N], 0.5, DType.Float32, device);
        var first = Autograd.Grad([y], [x], [seed], retainGraph: true)[0]!;
        var second = Autograd.Grad([y], [x], [seed])[0]!;
        Assert.False(seed.IsReleased);
        Assert.False(y.IsReleased);
        Assert.False(first.IsReleased);
        Assert.Equal(first.ToDoubleArray(), second.ToDoubleArray());
        Assert.Equal(0.5 * 1.01 * Math.Exp(x.ToDoubleArray()[7] * 1.01), second.ToDoubleArray()[7], 1e-5);
        Assert.True(pool.Statistics.BytesInUse > 0);
    }
}
