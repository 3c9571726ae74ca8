using Higher.Reference;

namespace Higher.Conformance.Memory;

/// <summary>
/// The shared read-only scalar operands (the 0 of <c>Where(mask, g, 0)</c> in clamp's backward, the c
/// of <c>x &gt; c</c> and <c>x / c</c>): they belong to no scope and no backward pass, so neither
/// releases them, and the ops that read them give the values of a fresh scalar.
/// </summary>
public sealed class ConstantScalarTests
{
    [Fact]
    public void ComparisonWithANumber_InAScope_GovernsOnlyTheMask()
    {
        var x = Tensor.FromArray(new float[] { -1, 0, 2, 3 }, [4]);
        Assert.IsType<ReferenceBackend>(x.Backend is CheckedBackend c ? c.Inner : x.Backend);
        using var scope = Tensor.NewScope("constants");
        var mask = x > 0.5;
        var half = x / 4;
        Assert.Equal(2, scope.Count); // the mask and the quotient; the constants 0.5 and 4 are not the scope's
        Assert.Equal(new[] { false, false, true, true }, mask.ToBoolArray());
        Assert.Equal(new[] { -0.25f, 0, 0.5f, 0.75f }, half.ToFloatArray());
    }

    [Fact]
    public void ClampBackward_AfterTheScopeOfAnEarlierOneEnded_StillReadsItsConstants()
    {
        var x = Tensor.FromArray(new double[] { -2, -0.5, 0.5, 3 }, [4]).WithRequiresGrad();
        for (int round = 0; round < 3; round++)
        {
            using var scope = Tensor.NewScope($"round {round}");
            // Clamp's backward reads the constants 0 and 10 of its comparisons and the 0 of its Where
            // (ReLU's backward, one ReluGrad kernel, reads none).
            var g = Autograd.Grad([x.Clamp(0, 10).Sum()], [x], createGraph: true)[0]!;
            Assert.Equal(new[] { 0.0, 0, 1, 1 }, g.ToDoubleArray());
            var gg = Autograd.Grad([(g * x).Sum()], [x])[0]!; // the backward of the recorded Where reads the zero again
            Assert.Equal(new[] { 0.0, 0, 1, 1 }, gg.ToDoubleArray());
        }
    }

    [Fact]
    public void AConstantFirstMadeInsideABackwardPass_IsNotFreedByThePass()
    {
        // A new thread has no constants yet: its first zero is made inside the pass (where the engine frees what it alone holds).
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                var x = Tensor.FromArray(new float[] { -1, 2 }, [2]).WithRequiresGrad();
                var g = Autograd.Grad([x.Clamp(0, 10).Sum()], [x])[0]!;
                Assert.Equal(new[] { 0f, 1 }, g.ToFloatArray());
                var masked = Tensor.Where(x.Detach() > 0, x.Detach(), 0); // the same zero, after the pass ended
                Assert.Equal(new[] { 0f, 2 }, masked.ToFloatArray());
                var again = Autograd.Grad([x.Clamp(0, 10).Sum()], [x])[0]!;
                Assert.Equal(new[] { 0f, 1 }, again.ToFloatArray());
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        Assert.Null(failure);
    }

    [Fact]
    public void Constants_AreKeptPerThreadAndValue_AndNeverMixDTypesOrValues()
    {
        var f = Tensor.FromArray(new float[] { 1, 5 }, [2]);
        var d = Tensor.FromArray(new double[] { 1, 5 }, [2]);
        for (int i = 0; i < 40; i++)
        {
            // More distinct values than the cache has slots: evictions must not hand out a wrong value.
            double c = i * 0.25;
            Assert.Equal(new[] { 1f / (float)(c + 1), 5f / (float)(c + 1) }, (f / (c + 1)).ToFloatArray());
            Assert.Equal(new[] { 1 / (c + 1), 5 / (c + 1) }, (d / (c + 1)).ToDoubleArray());
            Assert.Equal(new[] { 1 > c, 5 > c }, (d > c).ToBoolArray());
        }
        var z = Tensor.FromArray(new float[] { 0, 5 }, [2]);
        Assert.Equal(new[] { false, true }, (z > -0.0).ToBoolArray()); // -0 and 0: two constants, the same number to a comparison
        Assert.Equal(new[] { false, true }, (z > 0.0).ToBoolArray());
        Assert.Equal(new[] { true, false }, (z <= 0.0).ToBoolArray());
    }
}
