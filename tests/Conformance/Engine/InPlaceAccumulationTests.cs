using Higher.Conformance.Memory;

namespace Higher.Conformance.Engine;

/// <summary>
/// A backward pass that records nothing adds a second gradient into the first one's storage when
/// that storage is the pass's own and only this slot holds it; otherwise it allocates the sum.
/// Either way every gradient is what the out-of-place sum gives, bit for bit.
/// </summary>
public sealed class InPlaceAccumulationTests
{
    [Fact]
    public void AGradientSharedByTwoSlots_IsNotChangedWhenOneSlotAccumulates()
    {
        // (x + y) hands the one incoming gradient to both x and y; x then receives 3·g from x·3.
        // Writing that sum into the shared tensor would also give y 4 instead of 1.
        var x = Tensor.FromArray(new double[] { 1, 2, 3 }, [3]).WithRequiresGrad();
        var y = Tensor.FromArray(new double[] { 4, 5, 6 }, [3]).WithRequiresGrad();
        // Both orders of the two terms, so that the shared tensor is the first contribution in one of them.
        foreach (var loss in new[] { (x + y).Sum() + (x * 3).Sum(), (x * 3).Sum() + (x + y).Sum(), (x * 3 + (x + y)).Sum(), ((x + y) + x * 3).Sum() })
        {
            var grads = Autograd.Grad([loss], [x, y]);
            Assert.Equal(new double[] { 4, 4, 4 }, grads[0]!.ToDoubleArray());
            Assert.Equal(new double[] { 1, 1, 1 }, grads[1]!.ToDoubleArray());
        }
    }

    [Fact]
    public void OneTensorReturnedToBothInputsOfAnOp_IsAddedOutOfPlace()
    {
        // x·x returns the one product g·x for both of its inputs: the second add is of the tensor to itself.
        var x = Tensor.FromArray(new double[] { 1, -2, 3 }, [3]).WithRequiresGrad();
        var g = Autograd.Grad([(x * x).Sum() + (x * 5).Sum()], [x])[0]!;
        Assert.Equal(new double[] { 7, 1, 11 }, g.ToDoubleArray());
    }

    [Fact]
    public void ManyContributions_GiveTheBitsOfTheRecordedPass()
    {
        // The same sums with createGraph (where nothing is added in place) and without.
        var gen = new Generator(5);
        var x = Tensor.Normal([8, 9], 0, 1, DType.Float32, gen).WithRequiresGrad();
        var w = Tensor.Normal([9, 9], 0, 1, DType.Float32, gen).WithRequiresGrad();
        Tensor Loss()
        {
            var h = Tensor.MatMul(x, w).Tanh();
            return (Tensor.MatMul(h, w) * x.Sin() + h.Square() * 0.3 + Tensor.MatMul(x, w.Transpose(0, 1))).Sum();
        }
        var plain = Autograd.Grad([Loss()], [x, w]);
        var recorded = Autograd.Grad([Loss()], [x, w], createGraph: true);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(recorded[i]!.ToDoubleArray(), plain[i]!.ToDoubleArray());
        }
    }

    [Fact]
    public void AccumulatingInPlace_AllocatesFewerArrays()
    {
        // x used four times: three adds. Out of place each makes a [64, 64] array; in place none does.
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var x = Tensor.Rand([64, 64], DType.Float32, new Generator(2), device).WithRequiresGrad();
        var loss = (x.Sin() + x.Cos() + x.Exp() + x.Tanh()).Sum();
        long before = pool.Statistics.Rents;
        var g = Autograd.Grad([loss], [x])[0]!;
        long rents = pool.Statistics.Rents - before;
        // 11 arrays with the three accumulations in place (counted); 14 when each sum allocates.
        Assert.True(rents <= 11, $"{rents} arrays rented for the backward");
        var xs = x.ToDoubleArray();
        var expected = xs.Select(v => Math.Cos(v) - Math.Sin(v) + Math.Exp(v) + (1 - Math.Tanh(v) * Math.Tanh(v))).ToArray();
        var actual = g.ToDoubleArray();
        for (int i = 0; i < xs.Length; i++)
        {
            Assert.Equal(expected[i], actual[i], 1e-5);
        }
    }
}
