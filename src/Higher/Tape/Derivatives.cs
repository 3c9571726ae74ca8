namespace Higher.Tape;

/// <summary>Scalar arguments of a unary kernel (<see cref="IBackend.Unary"/>'s alpha and beta).</summary>
internal readonly record struct Scalars(double Alpha, double Beta);

/// <summary>No arguments beyond the tensors.</summary>
internal readonly record struct NoAttr;

/// <summary>An axis with a start and a step (slices).</summary>
internal readonly record struct AxisSlice(int Axis, int Start, int Step);

/// <summary>Transpose flags of a GEMM.</summary>
internal readonly record struct Transposes(bool A, bool B);

/// <summary>The shape of a reduction with its axes kept as size 1, and which axes were reduced.</summary>
internal readonly record struct Reduced(Shape Kept, bool[] Axes);

/// <summary>
/// The derivatives table: one row per differentiable primitive, saying what its backward saves
/// and giving the backward in differentiable tensor ops (so every derivative has derivatives of
/// its own). Composite ops (softmax, losses, layers) have no row: their derivatives come from
/// the primitives they are made of. Modelled on PyTorch's derivatives.yaml and tinygrad's
/// gradient rules; a row's backward reads only what its <see cref="Saves"/> declare.
/// <para>Adding a unary primitive: a <see cref="UnaryOp"/> member, its row in <see cref="Unary"/>,
/// the kernels, and the public method (docs/ARCHITECTURE.md lists the files).</para>
/// </summary>
internal static class Derivatives
{
    // ------------------------------------------------------------------ unary kernels: y = f(x; alpha, beta)

    private static readonly Derivative<Scalars>?[] UnaryRows = Rows<UnaryOp, Scalars>(
        (UnaryOp.Affine, Saves.None, static (Node n, in Scalars s, Tensor g) => [g * s.Alpha]),
        (UnaryOp.Exp, Saves.Output, static (Node n, in Scalars s, Tensor g) => [g * n.Output]),
        (UnaryOp.Log, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [g / n.Input(0)]),
        (UnaryOp.Log1p, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [g / (n.Input(0) + 1)]),
        (UnaryOp.Sqrt, Saves.Output, static (Node n, in Scalars s, Tensor g) => [g / (n.Output * 2)]),
        (UnaryOp.Abs, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [g * n.Input(0).Sign()]),
        (UnaryOp.Sign, Saves.None, static (Node n, in Scalars s, Tensor g) => [Tensor.ZerosLike(g)]),
        (UnaryOp.Relu, Saves.Output, static (Node n, in Scalars s, Tensor g) => [ReluBackward(n.Output, g)]),
        (UnaryOp.LeakyRelu, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [Tensor.Where(n.Input(0) > 0, g, g * s.Alpha)]),
        (UnaryOp.Tanh, Saves.Output, static (Node n, in Scalars s, Tensor g) => [g * (1 - n.Output * n.Output)]),
        (UnaryOp.Sigmoid, Saves.Output, static (Node n, in Scalars s, Tensor g) => [g * (n.Output * (1 - n.Output))]),
        (UnaryOp.Softplus, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [g * n.Input(0).Sigmoid()]),
        (UnaryOp.Erf, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [g * ((n.Input(0) * n.Input(0)).Neg().Exp() * (2 / Math.Sqrt(Math.PI)))]),
        (UnaryOp.Reciprocal, Saves.Output, static (Node n, in Scalars s, Tensor g) => [g * (n.Output * n.Output).Neg()]),
        (UnaryOp.PowScalar, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [s.Alpha == 0 ? Tensor.ZerosLike(g) : g * (n.Input(0).Pow(s.Alpha - 1) * s.Alpha)]),
        (UnaryOp.Clamp, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [Tensor.Where((n.Input(0) >= s.Alpha).LogicalAnd(n.Input(0) <= s.Beta), g, 0)]),
        (UnaryOp.Sin, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [g * n.Input(0).Cos()]),
        (UnaryOp.Cos, Saves.Input0, static (Node n, in Scalars s, Tensor g) => [g * n.Input(0).Sin().Neg()]),
        (UnaryOp.Expm1, Saves.Output, static (Node n, in Scalars s, Tensor g) => [g * (n.Output + 1)]));

    /// <summary>g where y &gt; 0, else 0, in one kernel (no mask); its own backward is the same kernel on the incoming gradient.</summary>
    private static Tensor ReluBackward(Tensor y, Tensor g) => Tensor.ReluGrad(g, y);

    /// <summary>The row of a unary kernel; throws naming the op when it has none (never a silent zero).</summary>
    public static Derivative<Scalars> Unary(UnaryOp op) =>
        (uint)op < (uint)UnaryRows.Length && UnaryRows[(int)op] is { } row
            ? row
            : throw new NotSupportedException($"The derivative of {op} is not implemented: add its row to Derivatives.Unary.");

    /// <summary>√x whose derivative is 0 wherever x ≤ 0; the masked branch divides by 1, never by 0.</summary>
    public static readonly Derivative<NoAttr> SafeSqrt = new("SafeSqrt", Saves.Input0 | Saves.Output, static (Node n, in NoAttr _, Tensor g) =>
    {
        var positive = n.Input(0) > 0;
        var denominator = Tensor.Where(positive, n.Output, 1) * 2;
        return [Tensor.Where(positive, g / denominator, 0)];
    });

    // ------------------------------------------------------------------ binary kernels: y = f(a, b), broadcast

    private static readonly Derivative<NoAttr>?[] BinaryRows = Rows<BinaryOp, NoAttr>(
        (BinaryOp.Add, Saves.None, static (Node n, in NoAttr _, Tensor g) => [Back(n, 0, g), Back(n, 1, g)]),
        (BinaryOp.Sub, Saves.None, static (Node n, in NoAttr _, Tensor g) => [Back(n, 0, g), n.NeedsGrad(1) ? Back(n, 1, g.Neg()) : null]),
        (BinaryOp.Mul, Saves.Inputs01, static (Node n, in NoAttr _, Tensor g) =>
        {
            var a = n.Input(0);
            var b = n.Input(1);
            if (ReferenceEquals(a, b) && n.NeedsGrad(0))
            {
                // x·x (a squared error): both inputs take the one product g·x, which the engine adds to itself, the bits of g·x + g·x.
                var h = Back(n, 0, g * a);
                return [h, h];
            }
            return [n.NeedsGrad(0) ? Back(n, 0, g * b) : null, n.NeedsGrad(1) ? Back(n, 1, g * a) : null];
        }),
        (BinaryOp.Div, Saves.Inputs01, static (Node n, in NoAttr _, Tensor g) =>
            [n.NeedsGrad(0) ? Back(n, 0, g / n.Input(1)) : null,
             n.NeedsGrad(1) ? Back(n, 1, (g * n.Input(0) / (n.Input(1) * n.Input(1))).Neg()) : null]),
        (BinaryOp.Pow, Saves.Inputs01 | Saves.Output, static (Node n, in NoAttr _, Tensor g) =>
        {
            var a = n.Input(0);
            var b = n.Input(1);
            Tensor? gb = null;
            if (n.NeedsGrad(1))
            {
                // d/db a^b = a^b·ln a, taken as 0 where a = 0 (the masked log reads 1, never 0).
                var zero = a.Eq(0);
                gb = Back(n, 1, Tensor.Where(zero, 0, g * n.Output * Tensor.Where(zero, 1, a).Log()));
            }
            return [n.NeedsGrad(0) ? Back(n, 0, g * b * Tensor.Pow(a, b - 1)) : null, gb];
        }),
        (BinaryOp.Maximum, Saves.Inputs01, static (Node n, in NoAttr _, Tensor g) => Extremum(n, g, max: true)),
        (BinaryOp.Minimum, Saves.Inputs01, static (Node n, in NoAttr _, Tensor g) => Extremum(n, g, max: false)),
        // b only gates: its derivative is 0 wherever it exists, and none flows to it (as through the
        // mask of where(b > 0, a, 0)), so a ReLU's double backward does not walk back through b.
        (BinaryOp.ReluGrad, Saves.Input1, static (Node n, in NoAttr _, Tensor g) =>
            [n.NeedsGrad(0) ? Back(n, 0, Tensor.ReluGrad(g, n.Input(1))) : null, null]));

    /// <summary>y = a + alpha·b in one kernel (<see cref="Tensor.AddScaled"/>): da = g, db = alpha·g.</summary>
    public static readonly Derivative<Scalars> ScaledAdd = new("ScaledAdd", Saves.None, static (Node n, in Scalars s, Tensor g) =>
        [n.NeedsGrad(0) ? g : null, n.NeedsGrad(1) ? g * s.Alpha : null]);

    /// <summary>The row of a binary kernel; throws naming the op when it has none.</summary>
    public static Derivative<NoAttr> Binary(BinaryOp op) =>
        (uint)op < (uint)BinaryRows.Length && BinaryRows[(int)op] is { } row
            ? row
            : throw new NotSupportedException($"The derivative of {op} is not implemented: add its row to Derivatives.Binary.");

    /// <summary>max/min of two tensors: the winner takes the gradient, ties split it equally (PyTorch's convention).</summary>
    private static Tensor?[] Extremum(Node n, Tensor g, bool max)
    {
        var a = n.Input(0);
        var b = n.Input(1);
        var tie = a.Eq(b);
        var aWins = max ? a > b : a < b;
        var half = g * 0.5;
        return
        [
            n.NeedsGrad(0) ? Back(n, 0, Tensor.Where(tie, half, Tensor.Where(aWins, g, 0))) : null,
            n.NeedsGrad(1) ? Back(n, 1, Tensor.Where(tie, half, Tensor.Where(aWins, 0, g))) : null,
        ];
    }

    /// <summary>A gradient summed back over the dimensions input <paramref name="i"/> was broadcast along.</summary>
    private static Tensor Back(Node n, int i, Tensor g) => g.SumTo(n.InputShape(i));

    /// <summary>where(c, a, b), c the auxiliary mask: the gradient goes to a where c holds and to b elsewhere.</summary>
    public static readonly Derivative<NoAttr> Where = new("Where", Saves.None, static (Node n, in NoAttr _, Tensor g) =>
    [
        n.NeedsGrad(0) ? Back(n, 0, Tensor.Where(n.Aux(0), g, 0)) : null,
        n.NeedsGrad(1) ? Back(n, 1, Tensor.Where(n.Aux(0), 0, g)) : null,
    ]);

    /// <summary>Conversion between float dtypes: the gradient converts back.</summary>
    public static readonly Derivative<NoAttr> Cast = new("Cast", Saves.None, static (Node n, in NoAttr _, Tensor g) => [g.Cast(n.InputDType(0))]);

    // ------------------------------------------------------------------ linear algebra

    /// <summary>C = op(A)·op(B): dop(A) = G·op(B)ᵀ and dop(B) = op(A)ᵀ·G, each one more GEMM with transpose flags; a 2-D operand shared by a batch sums its batch gradients.</summary>
    public static readonly Derivative<Transposes> MatMul = new("MatMul", Saves.Inputs01, static (Node n, in Transposes t, Tensor g) =>
    {
        var (ga, gb) = MatMulGrads(n, t, g);
        return [ga, gb];
    });

    /// <summary>C = op(A)·op(B) + bias (bias broadcast to C): the product's gradients as <see cref="MatMul"/>, the bias's summed back over its broadcast.</summary>
    public static readonly Derivative<Transposes> MatMulBias = new("MatMulBias", Saves.Inputs01, static (Node n, in Transposes t, Tensor g) =>
    {
        var (ga, gb) = MatMulGrads(n, t, g);
        return [ga, gb, n.NeedsGrad(2) ? Back(n, 2, g) : null];
    });

    private static (Tensor? A, Tensor? B) MatMulGrads(Node n, in Transposes t, Tensor g)
    {
        var a = n.Input(0);
        var b = n.Input(1);
        Tensor? ga = null, gb = null;
        // 2-D: a gradient may go straight into its slot's tensor (a pass that records nothing).
        bool plain = a.Rank == 2 && b.Rank == 2 && g.Rank == 2;
        if (n.NeedsGrad(0))
        {
            if (plain && n.TakeAccumulator(0) is { } acc)
            {
                ga = t.A ? Tensor.MatMulTAccumulate(acc, b, g, t.B, true) : Tensor.MatMulTAccumulate(acc, g, b, false, !t.B);
            }
            else
            {
                ga = t.A ? Tensor.MatMulT(b, g, t.B, true) : Tensor.MatMulT(g, b, false, !t.B);
            }
            if (a.Rank == 2 && ga.Rank == 3)
            {
                ga = ga.Sum(0);
            }
        }
        if (n.NeedsGrad(1))
        {
            if (plain && n.TakeAccumulator(1) is { } acc)
            {
                gb = t.B ? Tensor.MatMulTAccumulate(acc, g, a, true, t.A) : Tensor.MatMulTAccumulate(acc, a, g, !t.A, false);
            }
            else
            {
                gb = t.B ? Tensor.MatMulT(g, a, true, t.A) : Tensor.MatMulT(a, g, !t.A, false);
            }
            if (b.Rank == 2 && gb.Rank == 3)
            {
                gb = gb.Sum(0);
            }
        }
        return (ga, gb);
    }

    // ------------------------------------------------------------------ reductions

    /// <summary>
    /// Sum: the gradient is broadcast back over the reduced axes. Where the input's slot already holds a tensor of the
    /// pass's own, the broadcast is added into it (one pass, the bits of expanding and adding); otherwise the gradient
    /// is returned with the reduced axes kept as 1, and the engine broadcasts it (Engine.Defer: kept small in the
    /// empty slot until the next term is added to it broadcast, or expanded at once where it cannot wait).
    /// </summary>
    public static readonly Derivative<Reduced> Sum = new("Sum", Saves.None, static (Node n, in Reduced r, Tensor g) =>
    {
        var kept = g.ReshapeTo(r.Kept);
        if (kept.Shape != n.InputShape(0) && n.TakeAccumulator(0) is { } acc)
        {
            return [Tensor.AddBroadcastInto(acc, kept)];
        }
        return [kept];
    });

    /// <summary>scale·Σ x² (<see cref="Tensor.ScaledSumOfSquares"/>): dx = x·(2·scale·g), g a 0-d tensor.</summary>
    public static readonly Derivative<Scalars> ScaledSumOfSquares = new("ScaledSumOfSquares", Saves.Input0, static (Node n, in Scalars s, Tensor g) =>
        [n.Input(0) * (g * (2 * s.Alpha))]);

    /// <summary>amax: the gradient is shared equally among the elements equal to the maximum.</summary>
    public static readonly Derivative<Reduced> Amax = new("Amax", Saves.Input0 | Saves.Output, static (Node n, in Reduced r, Tensor g) => ShareExtreme(n, r, g));

    /// <summary>amin: the gradient is shared equally among the elements equal to the minimum.</summary>
    public static readonly Derivative<Reduced> Amin = new("Amin", Saves.Input0 | Saves.Output, static (Node n, in Reduced r, Tensor g) => ShareExtreme(n, r, g));

    private static Tensor?[] ShareExtreme(Node n, in Reduced r, Tensor g)
    {
        var x = n.Input(0);
        var kept = r.Kept.ToArray();
        var mask = x.Eq(n.Output.Detach().Reshape(kept));
        var axes = new List<int>();
        for (int i = 0; i < r.Axes.Length; i++)
        {
            if (r.Axes[i])
            {
                axes.Add(i);
            }
        }
        var count = mask.Cast(x.DType).Sum(axes.ToArray(), keepDim: true);
        return [Tensor.Where(mask, g.Reshape(kept) / count, 0)];
    }

    /// <summary>max along an axis (auxiliary: the Int64 indices): the gradient is scattered to the chosen index.</summary>
    public static readonly Derivative<int> MaxAlong = new("Max", Saves.None, static (Node n, in int axis, Tensor g) => ScatterToIndex(n, axis, g));

    /// <summary>min along an axis (auxiliary: the Int64 indices): the gradient is scattered to the chosen index.</summary>
    public static readonly Derivative<int> MinAlong = new("Min", Saves.None, static (Node n, in int axis, Tensor g) => ScatterToIndex(n, axis, g));

    private static Tensor?[] ScatterToIndex(Node n, int axis, Tensor g)
    {
        var indices = n.Aux(0);
        return [Tensor.ScatterAddIntoZeros(n.InputShape(0), axis, indices, g.Reshape(indices.Shape.ToArray()))];
    }

    // ------------------------------------------------------------------ shape and movement

    /// <summary>Reshape: the gradient takes the input's shape back.</summary>
    public static readonly Derivative<NoAttr> Reshape = new("Reshape", Saves.None, static (Node n, in NoAttr _, Tensor g) => [g.ReshapeTo(n.InputShape(0))]);

    /// <summary>Permute: the gradient is permuted by the inverse permutation.</summary>
    public static readonly Derivative<int[]> Permute = new("Permute", Saves.None, static (Node n, in int[] perm, Tensor g) =>
    {
        var inverse = new int[perm.Length];
        for (int i = 0; i < perm.Length; i++)
        {
            inverse[perm[i]] = i;
        }
        return [g.Permute(inverse)];
    });

    /// <summary>Expand: the gradient is summed over the expanded dimensions.</summary>
    public static readonly Derivative<NoAttr> Expand = new("Expand", Saves.None, static (Node n, in NoAttr _, Tensor g) => [g.SumTo(n.InputShape(0))]);

    /// <summary>Slice: the gradient is scattered into zeros of the input's shape.</summary>
    public static readonly Derivative<AxisSlice> Slice = new("Slice", Saves.None, static (Node n, in AxisSlice s, Tensor g) =>
        [Tensor.SliceScatter(g, n.InputShape(0), s.Axis, s.Start, s.Step)]);

    /// <summary>SliceScatter into zeros: the gradient is the slice it was scattered to.</summary>
    public static readonly Derivative<AxisSlice> SliceScatter = new("SliceScatter", Saves.None, static (Node n, in AxisSlice s, Tensor g) =>
    {
        // An empty source must give end = start: start - step + 1 would be negative for step > 1,
        // and Slice reads a negative end from the back.
        int length = n.InputShape(0).Dims[s.Axis];
        int end = length == 0 ? s.Start : s.Start + ((length - 1) * s.Step) + 1;
        return [g.Slice(s.Axis, s.Start, end, s.Step)];
    });

    /// <summary>Cat along an axis: each input gets its stretch of the gradient.</summary>
    public static readonly Derivative<int> Cat = new("Cat", Saves.None, static (Node n, in int axis, Tensor g) =>
    {
        var grads = new Tensor?[n.InputCount];
        int offset = 0;
        for (int i = 0; i < grads.Length; i++)
        {
            int size = n.InputShape(i).Dims[axis];
            if (n.NeedsGrad(i))
            {
                grads[i] = g.Narrow(axis, offset, size);
            }
            offset += size;
        }
        return grads;
    });

    /// <summary>A copy to another device: the gradient is copied back.</summary>
    public static readonly Derivative<NoAttr> ToDevice = new("ToDevice", Saves.None, static (Node n, in NoAttr _, Tensor g) => [g.To(n.InputDevice(0))]);

    // ------------------------------------------------------------------ indexing (auxiliary: the Int64 index)

    /// <summary>gather: the gradient is scatter-added back by the same index.</summary>
    public static readonly Derivative<int> Gather = new("Gather", Saves.None, static (Node n, in int axis, Tensor g) =>
        [Tensor.ScatterAddIntoZeros(n.InputShape(0), axis, n.Aux(0), g)]);

    /// <summary>scatter_add(self, source): self's gradient passes through, source's is gathered by the index.</summary>
    public static readonly Derivative<int> ScatterAdd = new("ScatterAdd", Saves.None, static (Node n, in int axis, Tensor g) =>
        [g, n.NeedsGrad(1) ? g.Gather(axis, n.Aux(0)) : null]);

    /// <summary>zeros.scatter_add(index, source) made by a backward (<see cref="Tensor.ScatterAddIntoZeros"/>): the source's gradient is gathered by the index.</summary>
    public static readonly Derivative<int> ScatterAddIntoZeros = new("ScatterAdd", Saves.None, static (Node n, in int axis, Tensor g) =>
        [g.Gather(axis, n.Aux(0))]);

    /// <summary>index_select: the gradient is index-added back.</summary>
    public static readonly Derivative<int> IndexSelect = new("IndexSelect", Saves.None, static (Node n, in int axis, Tensor g) =>
        [n.ZerosLikeInput(0).IndexAdd(axis, n.Aux(0), g)]);

    /// <summary>index_add(self, source): self's gradient passes through, source's is index-selected.</summary>
    public static readonly Derivative<int> IndexAdd = new("IndexAdd", Saves.None, static (Node n, in int axis, Tensor g) =>
        [g, n.NeedsGrad(1) ? g.IndexSelect(axis, n.Aux(0)) : null]);

    // ------------------------------------------------------------------ convolution and pooling
    // Conv2d, its input gradient and its weight gradient are the partial derivatives of one
    // trilinear form T(x, W, dy) (see ConvGeometry), so each one's derivatives are the other two.

    /// <summary>y = Conv(x, W) = ∂T/∂dy: dx = ConvInputGrad(g, W), dW = ConvWeightGrad(x, g).</summary>
    public static readonly Derivative<ConvGeometry> Conv2d = new("Conv2d", Saves.Inputs01, static (Node n, in ConvGeometry c, Tensor g) =>
    [
        n.NeedsGrad(0) ? Tensor.ConvInputGradPrimitive(g, n.Input(1), c) : null,
        n.NeedsGrad(1) ? Tensor.ConvWeightGradPrimitive(n.Input(0), g, c) : null,
    ]);

    /// <summary>y = Conv(x, W) + b: dx and dW as for <see cref="Conv2d"/>, db = Σ g over every axis but 1 (a sum a fused kernel may have left behind: <see cref="FedByBias"/>).</summary>
    public static readonly Derivative<ConvGeometry> Conv2dBias = new("Conv2dBias", Saves.Inputs01, static (Node n, in ConvGeometry c, Tensor g) =>
    [
        n.NeedsGrad(0) ? Tensor.ConvInputGradPrimitive(g, n.Input(1), c) : null,
        n.NeedsGrad(1) ? Tensor.ConvWeightGradPrimitive(n.Input(0), g, c) : null,
        n.NeedsGrad(2) ? ChannelSum(g) : null,
    ]);

    /// <summary>
    /// gx = ConvInputGrad(dy, W) = ∂T/∂x (the transposed convolution): d dy = Conv(g, W), dW = ConvWeightGrad(g, dy).
    /// d dy takes as its bias a channel sum's gradient waiting in dy's slot (<see cref="ConvIntoDySlot"/>).
    /// </summary>
    public static readonly Derivative<ConvGeometry> Conv2dInputGrad = new("Conv2dInputGrad", Saves.Inputs01, static (Node n, in ConvGeometry c, Tensor g) =>
    [
        n.NeedsGrad(0) ? ConvIntoDySlot(n, 0, g, n.Input(1), c) : null,
        n.NeedsGrad(1) ? Tensor.ConvWeightGradPrimitive(g, n.Input(0), c) : null,
    ]);

    /// <summary>
    /// gW = ConvWeightGrad(x, dy) = ∂T/∂W: dx = ConvInputGrad(dy, g), d dy = Conv(x, g), with a channel sum's gradient
    /// waiting in dy's slot as its bias (<see cref="ConvIntoDySlot"/>).
    /// </summary>
    public static readonly Derivative<ConvGeometry> Conv2dWeightGrad = new("Conv2dWeightGrad", Saves.Inputs01, static (Node n, in ConvGeometry c, Tensor g) =>
    [
        n.NeedsGrad(0) ? Tensor.ConvInputGradPrimitive(n.Input(1), g, c) : null,
        n.NeedsGrad(1) ? ConvIntoDySlot(n, 1, n.Input(0), g, c) : null,
    ]);

    /// <summary>
    /// Conv(x, w), the gradient of input <paramref name="k"/> of <paramref name="n"/> (an input-gradient or weight-gradient
    /// node's dy). Where dy's slot holds only a channel sum's gradient [1, O, 1, 1] waiting for the next term (a conv
    /// layer's bias gradient in the inner step, in a backward that records nothing: <see cref="Engine.TakeDeferredBroadcast"/>),
    /// the convolution takes it as its bias (<see cref="IBackend.Conv2dBias"/>, the bits of the convolution and the
    /// slot's broadcasting add) and the slot receives the sum, where it would have added the two in a full-size pass.
    /// </summary>
    private static Tensor ConvIntoDySlot(Node n, int k, Tensor x, Tensor w, in ConvGeometry c)
    {
        var bias = Engine.TakeDeferredBroadcast(n, k, new Shape(1, c.OutChannels, 1, 1));
        return bias is null ? Tensor.ConvPrimitive(x, w, c) : Tensor.ConvBiasPrimitive(x, w, bias.Reshape(c.OutChannels), c);
    }

    /// <summary>Max pooling (auxiliary: the Int64 indices of the maxima): dx = zeros[N·C, H·W].ScatterAdd(1, indices, g) (scattered into fresh zeros), whose own derivative gathers.</summary>
    public static readonly Derivative<PoolGeometry> MaxPool2d = new("MaxPool2d", Saves.None, static (Node n, in PoolGeometry p, Tensor g) =>
    {
        int planes = p.Planes, positions = p.OutHeight * p.OutWidth;
        var gx = Tensor.ScatterAddIntoZeros(new Shape(planes, p.InHeight * p.InWidth), 1, n.Aux(0).Reshape(planes, positions), g.Reshape(planes, positions));
        return [gx.Reshape(n.InputShape(0).ToArray())];
    });

    // Training batch norm: y = BN(x; w, b) with the batch statistics (auxiliaries: the forward's mean and
    // variance). Its input gradient A(g, x, w) and weight gradient B(g, x) are primitives as well. Per
    // channel, with x̂ = (x - μ)·r and means over the channel's N·S values, A = w·r·(g - ḡ - x̂·mean(g·x̂)) is
    // linear and self-adjoint in g, and B = Σ g·x̂; so d⟨h, A⟩/dg = A(h, x, w), d⟨k, B⟩/dx = A(g, x, k) and
    // d⟨h, A⟩/dw = Σ h·A(g, x, 1). The one derivative that is not a primitive, d⟨h, A⟩/dx, is a formula
    // in tensor ops that recomputes the statistics from x (they are functions of x, never constants), as
    // is x̂ in dB/dg: derivatives of every order stay exact.

    /// <summary>
    /// y = BN(x; w, b): dx = A(g, x, w), dw = B(g, x), db = Σ g per channel; where dx and dw are both needed, one kernel
    /// writes them and db (with a sum's bits), and leaves dx's channel sums for the bias gradient of the layer before.
    /// </summary>
    public static readonly Derivative<NormGeometry> BatchNorm = new("BatchNorm", Saves.Inputs01, static (Node n, in NormGeometry b, Tensor g) =>
    {
        if (n.NeedsGrad(0) && n.NeedsGrad(1))
        {
            var (dx, dw, fused) = Tensor.BatchNormBackwardPrimitive(g, n.Input(0), n.Input(1), n.Aux(0), n.Aux(1), b, n.TakeAccumulator(0), n.NeedsGrad(2),
                FedByBias(n, b.Channels));
            return [dx, dw, fused];
        }
        var db = n.NeedsGrad(2) ? ChannelSum(g) : null;
        return
        [
            n.NeedsGrad(0) ? Tensor.BatchNormInputGradPrimitive(g, n.Input(0), n.Input(1), n.Aux(0), n.Aux(1), b) : null,
            n.NeedsGrad(1) ? Tensor.BatchNormWeightGradPrimitive(g, n.Input(0), n.Aux(0), n.Aux(1), b) : null,
            db,
        ];
    });

    /// <summary>
    /// gx = A(gy, x, w): d gy = A(h, x, w), dx by <see cref="BatchNormInputGradOfX"/>, dw = Σ h·A(gy, x, 1).
    /// Where nothing records (a second-order meta-gradient's final backward), dx and dw come from one
    /// kernel of the same formula (<see cref="IBackend.BatchNormInputGradBackward"/>) instead of about
    /// fifteen full-size tensor ops, and d gy with them where it is needed too
    /// (<see cref="IBackend.BatchNormDoubleBackward"/>), each added into its slot where that holds a tensor already.
    /// </summary>
    public static readonly Derivative<NormGeometry> BatchNormInputGrad = new("BatchNormInputGrad", Saves.Inputs01 | Saves.Input2, static (Node n, in NormGeometry b, Tensor h) =>
    {
        var gy = n.Input(0);
        var x = n.Input(1);
        var w = n.Input(2);
        if (n.NeedsGrad(1) && !Autograd.ShouldRecord([gy, x, w, h]))
        {
            if (n.NeedsGrad(0))
            {
                // Each full-size gradient may go straight into its slot (one slot when gy and x are one tensor).
                var intoX = n.TakeAccumulator(1);
                var intoGy = ReferenceEquals(gy, x) ? null : n.TakeAccumulator(0);
                var (ggy, gx, gw) = Tensor.BatchNormDoubleBackwardRaw(gy, x, w, h, n.Aux(0), n.Aux(1), b, intoGy, intoX);
                return [ggy, gx, n.NeedsGrad(2) ? gw.Reshape(n.InputShape(2).ToArray()) : null];
            }
            var (dx, dw) = Tensor.BatchNormInputGradBackwardRaw(gy, x, w, h, n.Aux(0), n.Aux(1), b);
            return [null, dx, n.NeedsGrad(2) ? dw.Reshape(n.InputShape(2).ToArray()) : null];
        }
        var dgy = n.NeedsGrad(0) ? Tensor.BatchNormInputGradPrimitive(h, x, w, n.Aux(0), n.Aux(1), b) : null;
        return
        [
            dgy,
            n.NeedsGrad(1) ? BatchNormInputGradOfX(gy, x, w, h, n.Aux(0), n.Aux(1), b) : null,
            n.NeedsGrad(2) ? ChannelSum(h * Tensor.BatchNormInputGradPrimitive(gy, x, Tensor.OnesLike(w), n.Aux(0), n.Aux(1), b)) : null,
        ];
    });

    /// <summary>
    /// gw = B(gy, x): d gy = k·x̂ (x̂ from x in tensor ops), dx = A(gy, x, k). Where nothing records and both are
    /// needed, one kernel writes both (<see cref="IBackend.BatchNormBackward"/>, x̂ from the saved statistics); where gy's
    /// slot holds only a channel sum's gradient waiting for its next term (batch norm's own bias gradient, Σ gy, in the
    /// inner step: <see cref="Engine.TakeDeferredBroadcast"/>), the kernel adds it to k·x̂, the bits of the slot's
    /// broadcasting add, where the slot would have added the two in a full-size pass.
    /// </summary>
    public static readonly Derivative<NormGeometry> BatchNormWeightGrad = new("BatchNormWeightGrad", Saves.Inputs01, static (Node n, in NormGeometry b, Tensor k) =>
    {
        var gy = n.Input(0);
        var x = n.Input(1);
        if (n.NeedsGrad(0) && n.NeedsGrad(1) && !Autograd.ShouldRecord([gy, x, k]))
        {
            var intoX = n.TakeAccumulator(1);
            var intoGy = ReferenceEquals(gy, x) ? null : n.TakeAccumulator(0);
            var bias = intoGy is null && !ReferenceEquals(gy, x) ? Engine.TakeDeferredBroadcast(n, 0, ChannelShape(gy.Rank, b.Channels)) : null;
            var (gx, ggy) = Tensor.BatchNormWeightGradBackwardRaw(gy, x, k, n.Aux(0), n.Aux(1), b, intoX, intoGy, bias);
            return [ggy, gx];
        }
        return
        [
            n.NeedsGrad(0) ? (PerChannel(k, b) * Normalized(x, n.Aux(0), n.Aux(1), b).X).Reshape(n.InputShape(0).ToArray()) : null,
            n.NeedsGrad(1) ? Tensor.BatchNormInputGradPrimitive(gy, x, k, n.Aux(0), n.Aux(1), b) : null,
        ];
    });

    /// <summary>[1, C, 1, ...] of the given rank: the shape of a channel sum's gradient kept with its dimensions.</summary>
    private static Shape ChannelShape(int rank, int channels)
    {
        Span<int> dims = stackalloc int[rank];
        dims.Fill(1);
        dims[1] = channels;
        return new Shape(dims);
    }

    /// <summary>
    /// Whether the node's input 0 carries a bias whose gradient is a channel sum of this input's gradient (which a fused
    /// kernel can leave behind): the output of a convolution with its bias (<see cref="Conv2dBias"/>), or a sum a + b
    /// whose b is broadcast over every axis but 1 ([1, C, 1, ...]), with the bias needing its gradient.
    /// </summary>
    private static bool FedByBias(Node n, int channels)
    {
        if (n.Inputs[0].Fn is not { } f)
        {
            return false;
        }
        if (f.Is(Conv2dBias))
        {
            return f.NeedsGrad(2);
        }
        if (!f.Is(Binary(BinaryOp.Add)) || !f.NeedsGrad(1))
        {
            return false;
        }
        var bias = f.InputShape(1);
        var x = n.InputShape(0);
        if (bias.Rank != x.Rank || bias.Rank < 3)
        {
            return false;
        }
        for (int d = 0; d < bias.Rank; d++)
        {
            if (bias[d] != (d == 1 ? channels : 1))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Σ over every axis but 1 of t [N, C, ...], [C]: a bias's gradient. Reduce merges the spatial axes, so these are the
    /// bits of t as [N, C, S] summed over 0 and 2, with no reshape node in between (a deferred broadcast of the sum's
    /// gradient waits at t's own node: Engine.Defer).
    /// </summary>
    private static Tensor ChannelSum(Tensor t) => t.SumFlagged(Tensor.AllButChannelAxis(t.Rank), keepDim: false);

    /// <summary>A [C] vector as [1, C, 1], to broadcast over [N, C, S].</summary>
    private static Tensor PerChannel(Tensor v, in NormGeometry b) => v.Reshape(1, b.Channels, 1);

    /// <summary>
    /// x as [N, C, S], its x̂ = (x - μ)·r and r [1, C, 1]. Recomputed from x in differentiable tensor ops
    /// when x's own derivative is recorded (PyTorch's double backward does the same, for the third
    /// order); otherwise from the forward's saved batch <paramref name="mean"/> and biased
    /// <paramref name="variance"/> [C], the same statistics, two reductions and two full-size ops fewer.
    /// </summary>
    private static (Tensor X3, Tensor X, Tensor R) Normalized(Tensor x, Tensor mean, Tensor variance, in NormGeometry b)
    {
        int[] axes = [0, 2];
        var x3 = x.Reshape(b.Batch, b.Channels, b.Spatial);
        if (!Autograd.ShouldRecord(x))
        {
            var rs = (PerChannel(variance, b) + b.Eps).Sqrt().Reciprocal();
            return (x3, (x3 - PerChannel(mean, b)) * rs, rs);
        }
        var centered = x3 - x3.Mean(axes, keepDim: true);
        var r = ((centered * centered).Mean(axes, keepDim: true) + b.Eps).Sqrt().Reciprocal();
        return (x3, centered * r, r);
    }

    /// <summary>
    /// d⟨h, A(g, x, w)⟩/dx = w·r²·(x̂·(3·m·a - s) - a·(g - ḡ) - m·(h - h̄)), with the channel means
    /// m = mean(g·x̂), a = mean(h·x̂), s = mean(h·(g - ḡ)) (PyTorch's batchnorm_double_backward).
    /// </summary>
    private static Tensor BatchNormInputGradOfX(Tensor gy, Tensor x, Tensor w, Tensor h, Tensor mean, Tensor variance, in NormGeometry b)
    {
        int[] axes = [0, 2];
        var (_, xhat, r) = Normalized(x, mean, variance, b);
        var g3 = gy.Reshape(b.Batch, b.Channels, b.Spatial);
        var h3 = h.Reshape(b.Batch, b.Channels, b.Spatial);
        var gc = g3 - g3.Mean(axes, keepDim: true);
        var hc = h3 - h3.Mean(axes, keepDim: true);
        var m = (g3 * xhat).Mean(axes, keepDim: true);
        var a = (h3 * xhat).Mean(axes, keepDim: true);
        var s = (h3 * gc).Mean(axes, keepDim: true);
        var dx = PerChannel(w, b) * r * r * ((xhat * (m * a * 3 - s)) - (a * gc) - (m * hc));
        return dx.Reshape(x.Shape.ToArray());
    }

    /// <summary>y = AvgPool(x), linear: dx = AvgPoolGrad(g).</summary>
    public static readonly Derivative<AvgPoolSpec> AvgPool2d = new("AvgPool2d", Saves.None, static (Node n, in AvgPoolSpec s, Tensor g) => [Tensor.AvgPoolGradPrimitive(g, s)]);

    /// <summary>gx = AvgPoolGrad(dy), the adjoint of AvgPool, linear: d dy = AvgPool(g).</summary>
    public static readonly Derivative<AvgPoolSpec> AvgPool2dGrad = new("AvgPool2dGrad", Saves.None, static (Node n, in AvgPoolSpec s, Tensor g) => [Tensor.AvgPoolPrimitive(g, s)]);

    /// <summary>y = AdaptiveAvgPool(x), linear: dx = AdaptiveAvgPoolGrad(g).</summary>
    public static readonly Derivative<AdaptiveSpec> AdaptiveAvgPool2d = new("AdaptiveAvgPool2d", Saves.None, static (Node n, in AdaptiveSpec s, Tensor g) => [Tensor.AdaptivePoolGradPrimitive(g, s)]);

    /// <summary>gx = AdaptiveAvgPoolGrad(dy), linear: d dy = AdaptiveAvgPool(g).</summary>
    public static readonly Derivative<AdaptiveSpec> AdaptiveAvgPool2dGrad = new("AdaptiveAvgPool2dGrad", Saves.None, static (Node n, in AdaptiveSpec s, Tensor g) => [Tensor.AdaptivePoolPrimitive(g, s)]);

    /// <summary>A table indexed by an op enum's values, from (op, saves, backward) rows.</summary>
    private static Derivative<TAttr>?[] Rows<TOp, TAttr>(params (TOp Op, Saves Saves, BackwardFn<TAttr> Backward)[] rows) where TOp : struct, Enum
    {
        int size = 0;
        foreach (var value in Enum.GetValues<TOp>())
        {
            size = Math.Max(size, Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture) + 1);
        }
        var table = new Derivative<TAttr>?[size];
        foreach (var (op, saves, backward) in rows)
        {
            int i = Convert.ToInt32(op, System.Globalization.CultureInfo.InvariantCulture);
            if (table[i] is not null)
            {
                throw new InvalidOperationException($"The derivatives table has two rows for {op}.");
            }
            table[i] = new Derivative<TAttr>(op.ToString()!, saves, backward);
        }
        return table;
    }
}
