namespace Higher.Conformance.Engine;

/// <summary>
/// A linear layer's forward is one GEMM that adds its product to the broadcast bias (β = 1) and one
/// tape node: it must give the bits of the product followed by a separate bias add, and so must its
/// gradients and their own derivatives (the node's backward is the same ops as the two nodes').
/// </summary>
public sealed class FusedLinearTests
{
    public static TheoryData<int, int, int, int> Shapes => new()
    {
        { 10, 1, 40, 1 }, { 10, 40, 40, 1 }, { 10, 40, 1, 1 }, { 7, 33, 17, 1 }, { 64, 96, 80, 1 },
        { 10, 40, 40, 25 }, { 5, 3, 9, 4 },
        // Inner dimensions beyond one K block of the reference GEMM (512), in the forward (k = in) and
        // in the weight's gradient (k = rows): the bias is still added after the whole product.
        { 6, 513, 8, 1 }, { 4, 1500, 3, 1 }, { 530, 6, 4, 1 },
    };

    private static (Tensor X, Tensor W, Tensor B) Operands(int rows, int inF, int outF, int tasks, DType dtype, int seed)
    {
        var g = new Generator((ulong)seed);
        Shape Lead(params int[] dims) => tasks == 1 ? new Shape(dims) : new Shape([tasks, .. dims]);
        var x = Tensor.Normal(Lead(rows, inF), 0, 1, dtype, g).WithRequiresGrad();
        var w = Tensor.Normal(Lead(outF, inF), 0, 1, dtype, g).WithRequiresGrad();
        var b = Tensor.Normal(tasks == 1 ? new Shape(outF) : new Shape(tasks, 1, outF), 0, 1, dtype, g).WithRequiresGrad();
        return (x, w, b);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void FusedBiasProduct_IsBitForBitTheProductThenTheAdd_ToSecondOrder(int rows, int inF, int outF, int tasks)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var (x, w, b) = Operands(rows, inF, outF, tasks, dtype, rows * 1000 + inF * 10 + outF + tasks);
            var fused = Tensor.MatMulT(x, w, false, true, b);
            var split = Tensor.MatMulT(x, w, false, true) + b;
            Assert.Equal(split.ToDoubleArray(), fused.ToDoubleArray());

            // First and second derivatives through a nonlinearity, with the graph kept.
            Tensor[] Grads(Tensor y) => [.. Autograd.Grad([y.Tanh().Square().Sum()], [x, w, b], createGraph: true).Select(t => t!)];
            var gf = Grads(fused);
            var gs = Grads(split);
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(gs[i].ToDoubleArray(), gf[i].ToDoubleArray());
            }
            var hf = Autograd.Grad([gf.Select(t => t.Square().Sum()).Aggregate((p, q) => p + q)], [x, w, b]);
            var hs = Autograd.Grad([gs.Select(t => t.Square().Sum()).Aggregate((p, q) => p + q)], [x, w, b]);
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(hs[i]!.ToDoubleArray(), hf[i]!.ToDoubleArray());
            }
        }
    }

    [Fact]
    public void ABiasOfAnotherDTypeOrShape_IsRefused_BeforeAnythingIsWritten()
    {
        var (x, w, _) = Operands(4, 3, 2, 1, DType.Float32, 1);
        var ex = Assert.Throws<ArgumentException>(() => Tensor.MatMulT(x, w, false, true, Tensor.Zeros(new Shape(2), DType.Float64)));
        Assert.Contains("MatMul with a bias", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Tensor.MatMulT(x, w, false, true, Tensor.Zeros(new Shape(3), DType.Float32)));
        Assert.Contains("does not broadcast", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Tensor.Linear(x, w, Tensor.Zeros(new Shape(3), DType.Float32)));
    }
}
