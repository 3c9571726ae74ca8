using Higher.Tape;

namespace Higher;

public sealed partial class Tensor
{
    /// <summary>
    /// The GEMM primitive: C = op(A)·op(B) for 2-D operands or 3-D batches (a 2-D operand is shared
    /// by every batch). op is a transpose when the flag is set, folded into the kernel, never copied.
    /// dA = dC·op(B)ᵀ and dB = op(A)ᵀ·dC, themselves written with this primitive.
    /// </summary>
    internal static Tensor MatMulT(Tensor a, Tensor b, bool transposeA, bool transposeB) => MatMulT(a, b, transposeA, transposeB, null);

    /// <summary>
    /// op(a)·op(b) + bias in one GEMM (a linear layer's forward): <paramref name="bias"/> broadcasts to
    /// the product's shape. One tensor and one tape node instead of two, and the same bits.
    /// </summary>
    internal static Tensor MatMulT(Tensor a, Tensor b, bool transposeA, bool transposeB, Tensor? bias)
    {
        int batchA = a.Rank == 3 ? a.Shape.Dims[0] : 1, batchB = b.Rank == 3 ? b.Shape.Dims[0] : 1;
        int m = transposeA ? a.Shape[-1] : a.Shape[-2];
        int k = transposeA ? a.Shape[-2] : a.Shape[-1];
        int kb = transposeB ? b.Shape[-1] : b.Shape[-2];
        int n = transposeB ? b.Shape[-2] : b.Shape[-1];
        if (k != kb)
        {
            throw new ArgumentException($"MatMul: inner dimensions differ: {a.Describe()} (a{(transposeA ? "ᵀ" : "")}) has {k} columns but {b.Describe()} (b{(transposeB ? "ᵀ" : "")}) has {kb} rows.");
        }
        if (a.Rank == 3 && b.Rank == 3 && batchA != batchB)
        {
            throw new ArgumentException($"MatMul: batch sizes differ: {a.Describe()} (a) and {b.Describe()} (b).");
        }
        int batch = Math.Max(batchA, batchB);
        bool batched = a.Rank == 3 || b.Rank == 3;
        var shape = batched ? new Shape(batch, m, n) : new Shape(m, n);
        if (bias is not null)
        {
            CheckSameDeviceAndDType("MatMul with a bias", a, bias);
            if (!bias.Shape.IsBroadcastableTo(shape))
            {
                throw new ArgumentException($"MatMul with a bias: bias {bias.Describe()} does not broadcast to the product's shape {shape} of {a.Describe()} (a) and {b.Describe()} (b).");
            }
        }
        var y = Empty(a.Backend, a.DType, shape);
        if (bias is not null)
        {
            // The bias broadcast into C, and the GEMM adds its product to it (β = 1): each element is the
            // product's FMA chain from zero, then + β·C, one rounding, as MatMulT followed by + bias gives.
            BroadcastInto(a.Backend, bias.Storage, bias.Shape, y.Storage, shape);
        }
        a.Backend.Gemm(transposeA, transposeB, batch, m, n, k, 1.0,
            a.Storage, a.Rank == 3 ? (long)m * k : 0, b.Storage, b.Rank == 3 ? (long)k * n : 0,
            bias is null ? 0.0 : 1.0, y.Storage, (long)m * n);
        if (bias is null)
        {
            if (Autograd.ShouldRecord(a, b))
            {
                Derivatives.MatMul.Record(y, new Transposes(transposeA, transposeB), [a, b]);
            }
        }
        else if (Autograd.ShouldRecord([a, b, bias]))
        {
            Derivatives.MatMulBias.Record(y, new Transposes(transposeA, transposeB), [a, b, bias]);
        }
        return y;
    }

    /// <summary>
    /// acc += op(a)·op(b) in acc's own storage, for 2-D operands (a backward adding its gradient into
    /// the pass's slot, <see cref="Tape.Node.TakeAccumulator"/>): one GEMM with β = 1, each element the
    /// product's FMA chain from zero and then + acc, one rounding, as the product followed by the slot's
    /// add gives. Records nothing.
    /// </summary>
    internal static Tensor MatMulTAccumulate(Tensor acc, Tensor a, Tensor b, bool transposeA, bool transposeB)
    {
        int m = transposeA ? a.Shape[1] : a.Shape[0];
        int k = transposeA ? a.Shape[0] : a.Shape[1];
        int kb = transposeB ? b.Shape[1] : b.Shape[0];
        int n = transposeB ? b.Shape[0] : b.Shape[1];
        if (a.Rank != 2 || b.Rank != 2 || acc.Rank != 2 || k != kb || acc.Shape[0] != m || acc.Shape[1] != n)
        {
            throw new InvalidOperationException($"Internal error: accumulating a {a.Describe()} by {b.Describe()} product into {acc.Describe()}.");
        }
        a.Backend.Gemm(transposeA, transposeB, 1, m, n, k, 1.0, a.Storage, 0, b.Storage, 0, 1.0, acc.Storage, 0);
        acc.Version.Value++;
        return acc;
    }

    /// <summary>
    /// acc += b broadcast to acc's shape, in place (a gradient slot's tensor, <see cref="Tape.Node.TakeAccumulator"/>):
    /// one broadcasting Add, each element acc + b, the bits of expanding b and adding it.
    /// </summary>
    internal static Tensor AddBroadcastInto(Tensor acc, Tensor b)
    {
        if (acc.DType != b.DType || acc.Device != b.Device || !b.Shape.IsBroadcastableTo(acc.Shape))
        {
            throw new InvalidOperationException($"Internal error: adding {b.Describe()} broadcast into {acc.Describe()}.");
        }
        acc.Backend.Binary(BinaryOp.Add, acc.Storage, acc.Shape, b.Storage, b.Shape, acc.Storage, acc.Shape);
        acc.Version.Value++;
        return acc;
    }

    /// <summary>
    /// Matrix product with PyTorch's matmul semantics: 1-D·1-D is a dot product; a 1-D operand is
    /// promoted to a matrix and the added dimension removed; leading (batch) dimensions broadcast.
    /// </summary>
    public static Tensor MatMul(Tensor a, Tensor b)
    {
        CheckSameDeviceAndDType("MatMul", a, b);
        a.RequireFloat("MatMul");
        if (a.Rank == 0 || b.Rank == 0)
        {
            throw new ArgumentException($"MatMul needs operands of rank ≥ 1; got {a.Describe()} (a) and {b.Describe()} (b).");
        }
        if (a.Rank == 1 && b.Rank == 1)
        {
            if (a.Shape[0] != b.Shape[0])
            {
                throw new ArgumentException($"MatMul: inner dimensions differ: {a.Describe()} (a) and {b.Describe()} (b).");
            }
            return MatMulT(a.Reshape(1, -1), b.Reshape(-1, 1), false, false).Reshape();
        }
        if (a.Rank == 1)
        {
            var r = MatMul(a.Unsqueeze(0), b);
            return r.Squeeze(-2);
        }
        if (b.Rank == 1)
        {
            var r = MatMul(a, b.Unsqueeze(-1));
            return r.Squeeze(-1);
        }
        if (a.Rank == 2 && b.Rank == 2)
        {
            return MatMulT(a, b, false, false);
        }
        int m = a.Shape[-2], k = a.Shape[-1], n = b.Shape[-1];
        if (b.Rank == 2)
        {
            // [..., m, k]·[k, n]: one GEMM over the folded leading dimensions.
            if (b.Shape[0] != k)
            {
                throw new ArgumentException($"MatMul: inner dimensions differ: {a.Describe()} (a) has {k} columns but {b.Describe()} (b) has {b.Shape[0]} rows.");
            }
            var lead = a.Shape.ToArray()[..^1];
            // The row count is spelled out: -1 cannot be inferred when k = 0.
            return MatMulT(a.Reshape(RowCount(a), k), b, false, false).Reshape([.. lead, n]);
        }
        // Checked before the batches are broadcast and folded, so the message names the caller's shapes.
        if (b.Shape[-2] != k)
        {
            throw new ArgumentException($"MatMul: inner dimensions differ: {a.Describe()} (a) has {k} columns but {b.Describe()} (b) has {b.Shape[-2]} rows.");
        }
        var batchA = new Shape(a.Shape.Dims[..^2]);
        var batchB = new Shape(b.Shape.Dims[..^2]);
        var batchShape = Higher.Shape.Broadcast(batchA, batchB, $"MatMul batch dimensions of {a.Describe()} (a)", $"MatMul batch dimensions of {b.Describe()} (b)");
        int batch = (int)batchShape.Numel;
        var a3 = a.Rank == 2 ? a : a.Expand([.. batchShape.ToArray(), m, k]).Reshape(batch, m, k);
        var b3 = b.Expand([.. batchShape.ToArray(), b.Shape[-2], n]).Reshape(batch, b.Shape[-2], n);
        return MatMulT(a3, b3, false, false).Reshape([.. batchShape.ToArray(), m, n]);
    }

    /// <summary>Product of all dimensions but the last: the rows of <paramref name="x"/> viewed as a matrix.</summary>
    private static int RowCount(Tensor x)
    {
        long rows = 1;
        for (int i = 0; i < x.Rank - 1; i++)
        {
            rows *= x.Shape.Dims[i];
        }
        return checked((int)rows);
    }

    /// <summary>Matrix product this·other (see <see cref="MatMul(Tensor, Tensor)"/>).</summary>
    public Tensor MatMul(Tensor other) => MatMul(this, other);

    /// <summary>y = x·Wᵀ + b for x [..., in], W [out, in], b [out] (PyTorch's linear). The transpose is a GEMM flag.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        CheckSameDeviceAndDType("Linear", x, weight);
        if (weight.Rank != 2 || x.Rank == 0 || x.Shape[-1] != weight.Shape[1])
        {
            throw new ArgumentException($"Linear: input {x.Describe()} (x) does not match weight {weight.Describe()} (W): x's last dimension must equal W's second.");
        }
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != weight.Shape[0]))
        {
            throw new ArgumentException($"Linear: bias {bias.Describe()} must be 1-D with {weight.Shape[0]} elements, as weight {weight.Describe()} has rows.");
        }
        if (bias is not null && (bias.DType != weight.DType || bias.Device != weight.Device))
        {
            throw new ArgumentException($"Linear: bias {bias.Describe()} on {bias.Device} does not match weight {weight.Describe()} on {weight.Device}: bias {bias.DType.Name()} vs weight {weight.DType.Name()}.");
        }
        var x2 = x.Rank == 2 ? x : x.Reshape(RowCount(x), x.Shape[-1]);
        var y = MatMulT(x2, weight, false, true, bias);
        if (x.Rank == 2)
        {
            return y;
        }
        var dims = x.Shape.ToArray();
        dims[^1] = weight.Shape[0];
        return y.Reshape(dims);
    }

    /// <summary>Dot product of two 1-D tensors.</summary>
    public static Tensor Dot(Tensor a, Tensor b)
    {
        if (a.Rank != 1 || b.Rank != 1)
        {
            throw new ArgumentException($"Dot needs two 1-D tensors; got {a.Describe()} (a) and {b.Describe()} (b).");
        }
        return MatMul(a, b);
    }
}
