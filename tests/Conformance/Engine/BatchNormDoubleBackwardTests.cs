namespace Higher.Conformance.Engine;

/// <summary>
/// Batch norm's double backward where nothing records (a second-order meta-gradient's final backward)
/// is one kernel over the forward's saved statistics (<c>IBackend.BatchNormInputGradBackward</c>, and x̂
/// from those statistics in the weight gradient's backward); recorded, it is the tensor-op formula that
/// recomputes them from x. Both give the same Hessian-vector products to float64 rounding.
/// </summary>
public sealed class BatchNormDoubleBackwardTests
{
    [Theory]
    [InlineData(4, 3, 5)]
    [InlineData(1, 2, 7)]
    [InlineData(6, 1, 1)]
    public void SavedStatistics_AndRecomputedOnes_GiveTheSameSecondDerivatives(int n, int c, int s)
    {
        var g = new Generator((ulong)(n * 100 + c * 10 + s));
        var x = Tensor.Normal([n, c, s], 1.5, 2, DType.Float64, g).WithRequiresGrad();
        var w = Tensor.Normal([c], 1, 0.3, DType.Float64, g).WithRequiresGrad();
        var bias = Tensor.Normal([c], 0, 1, DType.Float64, g).WithRequiresGrad();
        var v = Tensor.Normal([n, c, s], 0, 1, DType.Float64, g);
        var u = Tensor.Normal([n, c, s], 0, 1, DType.Float64, g);
        var uw = Tensor.Normal([c], 0, 1, DType.Float64, g);

        double[][] SecondOrder(bool record)
        {
            var loss = (Tensor.BatchNorm(x, null, null, w, bias, training: true).Tanh() * v).Sum();
            var first = Autograd.Grad([loss], [x, w], createGraph: true);
            var inner = (first[0]! * u).Sum() + (first[1]! * uw).Sum();
            // createGraph records the second backward (x's derivative included): the tensor-op formula;
            // without it, the saved mean and variance serve.
            return [.. Autograd.Grad([inner], [x, w, bias], createGraph: record).Select(t => t!.ToDoubleArray())];
        }

        var fromSaved = SecondOrder(record: false);
        var recomputed = SecondOrder(record: true);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(recomputed[i].Length, fromSaved[i].Length);
            double scale = Math.Max(1, recomputed[i].Max(Math.Abs));
            for (int j = 0; j < recomputed[i].Length; j++)
            {
                Assert.True(Math.Abs(recomputed[i][j] - fromSaved[i][j]) <= 1e-12 * scale,
                    $"operand {i}, element {j}: {fromSaved[i][j]:R} from the saved statistics, {recomputed[i][j]:R} recomputed");
            }
        }
    }
}
