using System.Runtime.CompilerServices;

namespace Higher.Conformance.Memory;

/// <summary>
/// A node keeps edges to its inputs (their nodes and metadata), not the input tensors: an
/// intermediate that no backward saves is garbage as soon as the forward is done with it, while the
/// graph still gives the right gradient.
/// </summary>
public sealed class TapeRetentionTests
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (Tensor Loss, WeakReference Intermediate) Build(Tensor x)
    {
        var h = x.Affine(2, 1);          // saved by nobody: Affine's backward reads only the gradient
        var y = h.Affine(3, 0);
        return (y.Sum(), new WeakReference(h));
    }

    [Fact]
    public void AnIntermediateNoBackwardSaves_IsCollectable_AndTheGradientIsRight()
    {
        var x = Tensor.FromArray(new[] { 1.0, 2.0, 3.0 }).WithRequiresGrad();
        var (loss, intermediate) = Build(x);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(intermediate.IsAlive, "the unsaved intermediate is still reachable from the graph");
        loss.Backward();
        Assert.Equal([6.0, 6.0, 6.0], x.Grad!.ToDoubleArray());
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (Tensor Loss, WeakReference Saved) BuildSaved(Tensor x)
    {
        var h = x.Affine(2, 1);
        var y = h.Exp();                 // Exp saves its output, not h: h may go, y must stay
        return (y.Sum(), new WeakReference(y));
    }

    [Fact]
    public void ATensorABackwardSaves_StaysAlive()
    {
        var x = Tensor.FromArray(new[] { 0.0, 0.5 }).WithRequiresGrad();
        var (loss, saved) = BuildSaved(x);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.True(saved.IsAlive);
        loss.Backward();
        Assert.Equal(2 * Math.Exp(1), x.Grad!.ToDoubleArray()[0], 1e-12);
        Assert.Equal(2 * Math.Exp(2), x.Grad!.ToDoubleArray()[1], 1e-12);
    }

    [Fact]
    public void GradWithRespectToAnIntermediate_StillMatchesIt()
    {
        var x = Tensor.FromArray(new[] { 1.0, 2.0 }).WithRequiresGrad();
        var h = x * x;
        var loss = (h.Exp() + h * 3).Sum();
        var gh = Autograd.Grad(loss, h);
        var expected = h.ToDoubleArray().Select(v => Math.Exp(v) + 3).ToArray();
        Assert.Equal(expected[0], gh.ToDoubleArray()[0], 1e-12);
        Assert.Equal(expected[1], gh.ToDoubleArray()[1], 1e-12);
    }
}
