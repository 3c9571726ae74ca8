using Higher.Optim;

namespace Higher.Conformance.Reliability;

/// <summary>Anomaly detection: the first non-finite value of a forward op, a backward or an optimizer update throws, naming it; off, nothing is checked.</summary>
public sealed class AnomalyTests
{
    private static Tensor Leaf(params double[] values) => Tensor.FromArray(values).WithRequiresGrad();

    [Fact]
    public void ForwardNaN_ThrowsNamingTheOpAndItsOperands()
    {
        var x = Leaf(1, -1, 2);
        x.Name = "x";
        using (Autograd.DetectAnomaly())
        {
            var e = Assert.Throws<AnomalyException>(() => x.Log());
            Assert.Contains("the forward of Log produced NaN at element 1", e.Message, StringComparison.Ordinal);
            Assert.Contains("'x' [3] float64 on cpu", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void WithoutDetection_NothingIsChecked()
    {
        var y = Leaf(1, -1, 2).Log();
        Assert.True(double.IsNaN(y.ToDoubleArray()[1]));
    }

    [Fact]
    public void BackwardInfinity_ThrowsNamingTheNodeAndWhereItsForwardWasCalled()
    {
        var x = Leaf(0, 4);
        using (Autograd.DetectAnomaly())
        {
            var y = SqrtOf(x);                            // forward is finite: sqrt(0) = 0
            var e = Assert.Throws<AnomalyException>(() => y.Sum().Backward());
            Assert.Contains("SqrtBackward returned ∞ at element 0", e.Message.Replace("Infinity", "∞", StringComparison.Ordinal), StringComparison.Ordinal);
            Assert.Contains(nameof(SqrtOf), e.Message, StringComparison.Ordinal);
        }
        Assert.Null(x.Grad);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static Tensor SqrtOf(Tensor x) => x.Sqrt();

    [Fact]
    public void OptimizerUpdate_WithANaNGradient_ThrowsAndUpdatesNothing()
    {
        var w = Leaf(1, 2, 3);
        var v = Leaf(5);
        var opt = new Sgd([w, v], new SgdOptions { Lr = 0.1 });
        w.Grad = Tensor.FromArray(new[] { 1.0, 1.0, 1.0 });
        v.Grad = Tensor.FromArray(new[] { double.NaN });
        using (Autograd.DetectAnomaly())
        {
            var e = Assert.Throws<AnomalyException>(opt.Step);
            Assert.Contains("Sgd.Step would write NaN at element 0 of parameter 1", e.Message, StringComparison.Ordinal);
        }
        Assert.Equal([1.0, 2.0, 3.0], w.ToDoubleArray());
        Assert.Equal([5.0], v.ToDoubleArray());
    }

    [Fact]
    public async Task Detection_FollowsTheFlowIntoTasks()
    {
        using (Autograd.DetectAnomaly())
        {
            await Assert.ThrowsAsync<AnomalyException>(() => Task.Run(() => Leaf(-1).Sqrt()));
        }
        var outside = await Task.Run(() => Leaf(-1).Sqrt());
        Assert.True(double.IsNaN(outside.Item()));
    }
}
