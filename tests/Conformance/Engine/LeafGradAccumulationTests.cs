using Higher.Conformance.Memory;
using Higher.Optim;

namespace Higher.Conformance.Engine;

/// <summary>
/// Backward without createGraph adds a leaf's new gradient into the Grad it made on an earlier call
/// (PyTorch's AccumulateGrad, no allocation) only while no one else has seen that tensor: a Grad that
/// was read, assigned by the caller, shared with another leaf or passed in as a seed is never written;
/// the sum then goes to a new tensor. Every Grad is the out-of-place sum, whichever way it was formed.
/// </summary>
public sealed class LeafGradAccumulationTests
{
    private static Tensor Leaf(params double[] values) => Tensor.FromArray(values, [values.Length]).WithRequiresGrad();

    [Fact]
    public void AnUnreadGrad_IsTheAccumulatorOfLaterPasses()
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var w = Tensor.Rand([32, 32], DType.Float32, new Generator(3), device).WithRequiresGrad();
        var x = Tensor.Rand([32, 32], DType.Float32, new Generator(4), device);
        (w * x).Sum().Backward();
        var first = w.PeekGrad!;
        long before = pool.Statistics.Rents;
        for (int i = 0; i < 3; i++)
        {
            (w * x).Sum().Backward();
        }
        long inPlace = pool.Statistics.Rents - before;
        // The same tensor, holding 4·x.
        Assert.Same(first, w.PeekGrad);
        var xs = x.ToDoubleArray();
        var g = w.PeekGrad!.ToDoubleArray();
        for (int i = 0; i < xs.Length; i++)
        {
            Assert.Equal(4 * xs[i], g[i], 1e-6);
        }
        // The same three passes with the Grad read before each: each sum is a new array.
        before = pool.Statistics.Rents;
        for (int i = 0; i < 3; i++)
        {
            _ = w.Grad;
            (w * x).Sum().Backward();
        }
        long outOfPlace = pool.Statistics.Rents - before;
        Assert.Equal(outOfPlace - 3, inPlace);
        g = w.Grad!.ToDoubleArray();
        for (int i = 0; i < xs.Length; i++)
        {
            Assert.Equal(7 * xs[i], g[i], 1e-6);
        }
    }

    [Fact]
    public void AGradTheCallerRead_IsNeverWritten()
    {
        var w = Leaf(1, 2, 3);
        (w * w).Sum().Backward();
        var held = w.Grad!;
        (w * w).Sum().Backward();
        Assert.Equal(new double[] { 2, 4, 6 }, held.ToDoubleArray());
        var second = w.PeekGrad!;
        Assert.NotSame(held, second);
        Assert.Equal(new double[] { 4, 8, 12 }, second.ToDoubleArray());
        // The sum made out of place is the leaf's own again (read here without handing it out): a third pass adds into it.
        (w * w).Sum().Backward();
        Assert.Same(second, w.PeekGrad);
        Assert.Equal(new double[] { 6, 12, 18 }, w.Grad!.ToDoubleArray());
    }

    [Fact]
    public void AGradTheCallerAssigned_IsNeverWritten()
    {
        var w = Leaf(1, 2, 3);
        var mine = Tensor.FromArray(new double[] { 10, 20, 30 }, [3]);
        w.Grad = mine;
        (w * 2).Sum().Backward();
        (w * 2).Sum().Backward();
        Assert.Equal(new double[] { 10, 20, 30 }, mine.ToDoubleArray());
        Assert.Equal(new double[] { 14, 24, 34 }, w.Grad!.ToDoubleArray());
    }

    [Fact]
    public void AGradientTwoLeavesShare_IsAddedOutOfPlace()
    {
        // (a + b) hands one tensor to both leaves: adding a's next gradient into it would change b's too.
        var a = Leaf(1, 2);
        var b = Leaf(3, 4);
        for (int i = 0; i < 3; i++)
        {
            (a + b).Sum().Backward();
        }
        Assert.Equal(new double[] { 3, 3 }, a.Grad!.ToDoubleArray());
        Assert.Equal(new double[] { 3, 3 }, b.Grad!.ToDoubleArray());
    }

    [Fact]
    public void ACallersSeed_IsNeverWritten()
    {
        // The gradient of w itself is the seed: it is the caller's tensor, not the pass's.
        var w = Leaf(1, 2, 3);
        var seed = Tensor.FromArray(new double[] { 1, 1, 1 }, [3]);
        Autograd.Backward([w], [seed]);
        Autograd.Backward([w], [seed]);
        Autograd.Backward([w], [seed]);
        Assert.Equal(new double[] { 1, 1, 1 }, seed.ToDoubleArray());
        Assert.Equal(new double[] { 3, 3, 3 }, w.Grad!.ToDoubleArray());
    }

    [Fact]
    public void MomentumBufferMadeFromAGrad_IsNotChangedByTheNextBackward()
    {
        // SGD's first momentum buffer is the gradient itself (b ← g); without ZeroGrad the next Backward
        // accumulates into p.Grad. Were that the buffer's storage, the second step would use b = 2g + 2g.
        var p = Leaf(1, 1);
        var opt = new Sgd([p], new SgdOptions { Lr = 0.1, Momentum = 0.9 });
        (p * 2).Sum().Backward();  // g = 2
        opt.Step();                // b = 2, p = 1 - 0.2 = 0.8
        (p * 2).Sum().Backward();  // g = 2 + 2 = 4 (no ZeroGrad)
        opt.Step();                // b = 0.9·2 + 4 = 5.8, p = 0.8 - 0.58 = 0.22
        var values = p.ToDoubleArray();
        Assert.Equal(0.22, values[0], 1e-12);
        Assert.Equal(0.22, values[1], 1e-12);
    }

    [Fact]
    public void CreateGraph_AddsOutOfPlaceAndKeepsTheGraph()
    {
        var w = Leaf(1, 2, 3);
        (w * w).Sum().Backward(createGraph: true);
        var first = w.PeekGrad!;
        (w * w).Sum().Backward(createGraph: true);
        Assert.NotSame(first, w.PeekGrad);
        Assert.Equal(new double[] { 2, 4, 6 }, first.ToDoubleArray());
        // d(Σ grad)/dw = d(Σ 4w)/dw = 4.
        Assert.Equal(new double[] { 4, 4, 4 }, Autograd.Grad([w.Grad!.Sum()], [w])[0]!.ToDoubleArray());
    }
}
