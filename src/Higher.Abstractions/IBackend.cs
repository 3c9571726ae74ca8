namespace Higher;

/// <summary>
/// The raw, non-differentiable kernel set of a device. Every buffer is a contiguous row-major
/// <see cref="IStorage"/> of this backend. Shapes, dtypes and lengths are validated by the caller
/// (the Higher engine) before a kernel is called; backends trust them. Kernels never round-trip
/// to the host except <see cref="Upload{T}"/> and <see cref="Download{T}"/>. Output storages never
/// alias inputs, except that <see cref="Unary"/> and <see cref="Binary"/> accept y being the very
/// storage of x (or of a, when aShape equals yShape): the engine's in-place updates rely on it. Results are deterministic: the same inputs give the same
/// bits whatever the thread count.
/// </summary>
public interface IBackend
{
    /// <summary>Short name for messages ("reference", "cuda").</summary>
    string Name { get; }

    /// <summary>Device the kernels run on.</summary>
    Device Device { get; }

    /// <summary>Allocates <paramref name="length"/> elements, zero-filled.</summary>
    IStorage Allocate(DType dtype, long length);

    /// <summary>Allocates <paramref name="length"/> elements whose content is unspecified (every element will be written).</summary>
    IStorage AllocateUninitialized(DType dtype, long length);

    /// <summary>
    /// Copies host data into a new storage of <paramref name="dtype"/>. <typeparamref name="T"/> is
    /// float (Float32), double (Float64), long (Int64) or bool (Bool) and must match <paramref name="dtype"/>.
    /// </summary>
    IStorage Upload<T>(ReadOnlySpan<T> data, DType dtype) where T : unmanaged;

    /// <summary>Copies the whole storage to host memory; <typeparamref name="T"/> must match its dtype and <paramref name="destination"/> its length.</summary>
    void Download<T>(IStorage source, Span<T> destination) where T : unmanaged;

    /// <summary>Sets every element to <paramref name="value"/> (converted to the storage dtype; Bool: value != 0).</summary>
    void Fill(IStorage destination, double value);

    /// <summary>Converts every element of <paramref name="source"/> into <paramref name="destination"/> (same length). Float to Int64 truncates toward zero; to Bool is x != 0.</summary>
    void Cast(IStorage source, IStorage destination);

    /// <summary>
    /// Strided copy: for every index i of <paramref name="shape"/>,
    /// dst[dstOffset + Σ i_d·dstStrides_d] = src[srcOffset + Σ i_d·srcStrides_d].
    /// Source strides may be 0 (broadcast) and in any order (permute); destination positions never
    /// overlap. Same dtype. This one kernel serves copy, permute, expand, narrow, select and cat.
    /// </summary>
    void StridedCopy(IStorage source, long sourceOffset, ReadOnlySpan<long> sourceStrides,
        IStorage destination, long destinationOffset, ReadOnlySpan<long> destinationStrides, Shape shape);

    /// <summary>Elementwise y = op(x; alpha, beta); x and y have the same length and dtype.</summary>
    void Unary(UnaryOp op, IStorage x, IStorage y, double alpha = 0, double beta = 0);

    /// <summary>Elementwise y = op(a, b) where a (shape <paramref name="aShape"/>) and b broadcast to <paramref name="yShape"/>.</summary>
    void Binary(BinaryOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape);

    /// <summary>
    /// y = a + alpha·b elementwise over three storages of one floating-point dtype and one length
    /// (torch.add(a, b, alpha=alpha): an optimizer's update in one pass). alpha is first converted
    /// to the dtype and the product is rounded before the sum (no fused multiply-add), so y has the
    /// bits of Unary Affine(b; alpha, 0) followed by Binary Add. y may be a's storage (an update in
    /// place), never b's.
    /// </summary>
    void ScaledAdd(IStorage a, IStorage b, double alpha, IStorage y);

    /// <summary>
    /// One parameter's Adam step (torch.optim.Adam's, not recorded) over storages of one floating-point
    /// dtype and length, into new storages: with g = ±grad (+ wd·param unless decoupled),
    /// m' = β1·m + (1-β1)·g, v' = β2·v + (1-β2)·g·g (AMSGrad: v̂' = max(v̂, v')), and
    /// param' = p − (lr/(1-β1^t))·m' / (√v'/√(1-β2^t) + ε), p = param·(1 − lr·wd) when decoupled (AdamW).
    /// Each step is rounded to the dtype as the separate Affine, Binary and Unary kernels round it
    /// (scalars converted to the dtype first, no fused multiply-add), so the result has the bits of
    /// the composed update. Outputs must not alias inputs; the max storages are used only with
    /// AMSGrad. The default runs those kernels one after another; a backend may fuse them.
    /// </summary>
    void AdamUpdate(in AdamScalars scalars, IStorage param, IStorage grad, IStorage expAvg, IStorage expAvgSq, IStorage? maxExpAvgSq,
        IStorage paramOut, IStorage expAvgOut, IStorage expAvgSqOut, IStorage? maxExpAvgSqOut) =>
        ComposedKernels.AdamUpdate(this, scalars, param, grad, expAvg, expAvgSq, maxExpAvgSq, paramOut, expAvgOut, expAvgSqOut, maxExpAvgSqOut);

    /// <summary>Elementwise y = op(a, b) into a Bool storage, with broadcasting.</summary>
    void Compare(CompareOp op, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape);

    /// <summary>y = condition ? a : b elementwise, all three broadcast to <paramref name="yShape"/>; condition is Bool.</summary>
    void Where(IStorage condition, Shape conditionShape, IStorage a, Shape aShape, IStorage b, Shape bShape, IStorage y, Shape yShape);

    /// <summary>
    /// Reduces x over the axes whose flag in <paramref name="reduceAxes"/> is true. y holds
    /// xShape with those axes set to 1 (so it has the same element count as the kept dimensions).
    /// Sums accumulate in a fixed order (and in float64 for Float32 inputs is allowed).
    /// </summary>
    void Reduce(ReduceOp op, IStorage x, Shape xShape, ReadOnlySpan<bool> reduceAxes, IStorage y);

    /// <summary>
    /// Max or min along one axis with the index of the first extreme element. x is viewed as
    /// [outer, size, inner]; values and indices (Int64) are [outer, inner]. Requires size &gt; 0.
    /// NaN counts as the extreme.
    /// </summary>
    void ArgReduce(ReduceOp op, IStorage x, int outer, int size, int inner, IStorage values, IStorage indices);

    /// <summary>
    /// Batched row-major GEMM: for each b in [0, batch),
    /// C_b = alpha · op(A_b) · op(B_b) + beta · C_b, op(A) is [m, k] (A stored [k, m] when
    /// <paramref name="transposeA"/>), op(B) is [k, n] (B stored [n, k] when <paramref name="transposeB"/>),
    /// C_b is [m, n]. X_b starts at element b·strideX; a stride of 0 repeats one matrix for every batch.
    /// With beta == 0, C's prior content is ignored (even NaN). With beta != 0, beta·C is added to the
    /// finished product (whatever the inner dimension), so C + op(A)·op(B) with beta = 1 has the bits of
    /// the beta = 0 product followed by an elementwise add (the fused bias and the engine's accumulation
    /// into a gradient slot rely on this).
    /// </summary>
    void Gemm(bool transposeA, bool transposeB, int batch, int m, int n, int k, double alpha,
        IStorage a, long strideA, IStorage b, long strideB, double beta, IStorage c, long strideC);

    /// <summary>
    /// torch.gather along one axis: x viewed as [outer, xSize, inner], index (Int64) and y as
    /// [outer, indexSize, inner]; y[o, j, i] = x[o, index[o, j, i], i]. Indices are in range (caller checked).
    /// </summary>
    void Gather(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y);

    /// <summary>
    /// torch.scatter_add_ along one axis, in place on <paramref name="destination"/> viewed as
    /// [outer, destinationSize, inner]: destination[o, index[o, j, i], i] += source[o, j, i] with
    /// index and source [outer, indexSize, inner]. Accumulates in a fixed order (j ascending).
    /// </summary>
    void ScatterAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source);

    /// <summary>
    /// <see cref="ScatterAdd"/> into zeros: <paramref name="destination"/>'s previous contents are ignored, it is set
    /// to zero and then source is scattered into it, with the bits of <see cref="Fill"/>(0) followed by
    /// <see cref="ScatterAdd"/> (what the default runs). A backend may clear and scatter each [destinationSize, inner]
    /// slice while it is in cache, in one pass.
    /// </summary>
    void ScatterAddIntoZeros(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source)
    {
        Fill(destination, 0);
        ScatterAdd(destination, outer, destinationSize, inner, index, indexSize, source);
    }

    /// <summary>
    /// index_select along one axis: x viewed as [outer, xSize, inner], index is 1-D Int64 of length
    /// indexSize, y is [outer, indexSize, inner]: y[o, j, i] = x[o, index[j], i].
    /// </summary>
    void IndexSelect(IStorage x, int outer, int xSize, int inner, IStorage index, int indexSize, IStorage y);

    /// <summary>
    /// index_add_ along one axis, in place: destination[o, index[j], i] += source[o, j, i], destination viewed as
    /// [outer, destinationSize, inner]. Accumulates in a fixed order (j ascending).
    /// </summary>
    void IndexAdd(IStorage destination, int outer, int destinationSize, int inner, IStorage index, int indexSize, IStorage source);

    /// <summary>
    /// 2-D convolution (cross-correlation) y = ∂T/∂dy of <see cref="ConvGeometry"/>'s trilinear form:
    /// y[n, o, i, j] = Σ W[o, c', p, q] · x[n, g·Cg + c', i·sh + p·dh - padTop, j·sw + q·dw - padLeft].
    /// x, weight and y share one floating dtype; y is fully written. Sums in a fixed order.
    /// </summary>
    void Conv2d(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage y);

    /// <summary>
    /// <see cref="Conv2d"/> plus a bias [O] per output channel: y = Conv2d(x, weight) + bias[o], with the bits of the
    /// convolution followed by a <see cref="BinaryOp.Add"/> of the bias broadcast over [N, O, OH·OW]. A backend may add
    /// the bias as it stores each output tile, saving a pass over y; the default runs the two kernels.
    /// </summary>
    void Conv2dBias(in ConvGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y)
    {
        Conv2d(geometry, x, weight, y);
        var full = new Shape(geometry.Batch, geometry.OutChannels, geometry.OutHeight * geometry.OutWidth);
        Binary(BinaryOp.Add, y, full, bias, new Shape(1, geometry.OutChannels, 1), y, full);
    }

    /// <summary>
    /// The input gradient of <see cref="Conv2d"/>, i.e. the transposed convolution: gradX = ∂T/∂x,
    /// gradX[n, c, h, w] = Σ over (o, i, j, p, q) reaching (h, w) of W[o, c', p, q] · gradY[n, o, i, j].
    /// gradX is [N, C, H, W] and fully written (0 where no window reaches). Sums in a fixed order.
    /// </summary>
    void Conv2dInputGrad(in ConvGeometry geometry, IStorage gradY, IStorage weight, IStorage gradX);

    /// <summary>
    /// The weight gradient of <see cref="Conv2d"/>: gradW = ∂T/∂W,
    /// gradW[o, c', p, q] = Σ_{n, i, j} gradY[n, o, i, j] · x[n, g·Cg + c', i·sh + p·dh - padTop, j·sw + q·dw - padLeft].
    /// gradW is fully written. Sums in a fixed order (independent of the thread count).
    /// </summary>
    void Conv2dWeightGrad(in ConvGeometry geometry, IStorage x, IStorage gradY, IStorage gradWeight);

    /// <summary>
    /// Max pooling with indices: y[plane, i, j] = the maximum of the window (padding never wins;
    /// NaN counts as the maximum), indices (Int64) = the flat position h·W + w within the plane of
    /// the first maximal element, PyTorch's convention. Every window holds at least one input element.
    /// </summary>
    void MaxPool2d(in PoolGeometry geometry, IStorage x, IStorage y, IStorage indices);

    /// <summary>
    /// Average pooling: y = the window's sum divided by <paramref name="divisorOverride"/> when it is
    /// positive, else by the window's size clipped to the padded input when
    /// <paramref name="countIncludePad"/>, else by the count of input elements it covers (PyTorch's rules).
    /// </summary>
    void AvgPool2d(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage x, IStorage y);

    /// <summary>
    /// The adjoint of <see cref="AvgPool2d"/> (its input gradient): gradX[plane, h, w] = Σ over windows
    /// covering (h, w) of gradY / divisor. Fully written. Linear, so its own gradient is <see cref="AvgPool2d"/>.
    /// </summary>
    void AvgPool2dGrad(in PoolGeometry geometry, bool countIncludePad, int divisorOverride, IStorage gradY, IStorage gradX);

    /// <summary>
    /// Adaptive average pooling of [planes, H, W] to [planes, OH, OW]: output row i averages input rows
    /// ⌊i·H/OH⌋ to ⌈(i+1)·H/OH⌉ - 1, likewise for columns (PyTorch's windows).
    /// </summary>
    void AdaptiveAvgPool2d(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage x, IStorage y);

    /// <summary>The adjoint of <see cref="AdaptiveAvgPool2d"/>: gradX is [planes, H, W], fully written.</summary>
    void AdaptiveAvgPool2dGrad(int planes, int inHeight, int inWidth, int outHeight, int outWidth, IStorage gradY, IStorage gradX);

    /// <summary>
    /// Batch normalization with the batch's statistics (training), x viewed as [N, C, S] (see
    /// <see cref="NormGeometry"/>): per channel c, μ_c the mean and σ²_c the biased variance of its N·S
    /// values (two passes, accumulated in double), each rounded to the dtype and written to
    /// <paramref name="mean"/> [C] and <paramref name="variance"/> [C]; then, with r_c = 1/√(σ²_c + eps)
    /// computed in double from the rounded σ²_c (as the gradients compute it), y = (x - μ_c)·r_c·weight_c + bias_c.
    /// Each channel is summed in a fixed order (independent of the thread count).
    /// </summary>
    void BatchNorm(in NormGeometry geometry, IStorage x, IStorage weight, IStorage bias, IStorage y, IStorage mean, IStorage variance);

    /// <summary>
    /// The input gradient of <see cref="BatchNorm"/> through the batch statistics:
    /// gradX = weight_c·r_c·(gradY - mean_c(gradY) - x̂·mean_c(gradY·x̂)) with x̂ = (x - μ_c)·r_c, the means
    /// over channel c's N·S values, μ and r from the forward's <paramref name="mean"/> and <paramref name="variance"/>.
    /// Fully written; fixed summation order.
    /// </summary>
    void BatchNormInputGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight, IStorage gradX);

    /// <summary>
    /// The weight gradient of <see cref="BatchNorm"/>: gradWeight_c = Σ over channel c's N·S values of
    /// gradY·(x - μ_c)·r_c, [C]. Fixed summation order.
    /// </summary>
    void BatchNormWeightGrad(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage gradWeight);

    /// <summary>
    /// The derivatives of gx = <see cref="BatchNormInputGrad"/>(gy, x, w) with respect to x and w,
    /// contracted with <paramref name="h"/> (x's shape), in two passes per channel:
    /// gradX = w_c·r_c²·(x̂·(3·m·a - s) - a·(gy - ḡ) - m·(h - h̄)) and gradWeight_c = N·S·r_c·(s - m·a),
    /// with x̂ = (x - μ_c)·r_c and the channel means ḡ = mean(gy), h̄ = mean(h), m = mean(gy·x̂),
    /// a = mean(h·x̂), s = mean(h·(gy - ḡ)) (PyTorch's batchnorm_double_backward), μ and r from the
    /// forward's <paramref name="mean"/> and <paramref name="variance"/>. Sums in double, fixed order.
    /// A kernel without a derivative of its own: the engine calls it only where nothing records, and
    /// writes the same formula in tensor ops where a higher order needs it.
    /// </summary>
    void BatchNormInputGradBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradX, IStorage gradWeight);

    /// <summary>
    /// <see cref="BatchNormInputGrad"/> into <paramref name="gradX"/> and, where given, <see cref="BatchNormWeightGrad"/>
    /// into <paramref name="gradWeight"/> and weight_c·x̂ into <paramref name="scaledNormalized"/> (x's shape) as
    /// <see cref="BatchNorm"/> with a zero bias writes it: x·T(r_c·weight_c) + T(-μ_c·r_c·weight_c), the scale and shift
    /// rounded to the dtype first. <paramref name="mean"/> and <paramref name="variance"/> are the statistics
    /// <see cref="BatchNorm"/> wrote for this x. Each output has the bits of the kernel it stands for; a backend may
    /// share the channel sums of gradY and gradY·(x - μ) the first two need and write all three in one pass. The
    /// default runs those kernels one after another. Not recorded: the engine records each output as its own node.
    /// <paramref name="accumulate"/> adds gradX (<see cref="NormAccumulate.GradX"/>) or scaledNormalized
    /// (<see cref="NormAccumulate.Second"/>) into the destination instead of writing it, with the bits of the value
    /// followed by a <see cref="BinaryOp.Add"/> into the destination. Where given, <paramref name="gradYSums"/> and
    /// <paramref name="gradXSums"/> ([C]) receive the channel sums of gradY and of gradX's final contents with the bits
    /// of <see cref="Reduce"/>'s sum over axes 0 and 2 of [N, C, S]: batch norm's bias gradient, and (for the engine to
    /// reuse) the bias gradient of a layer before it, from data the kernel has at hand. Where given (with
    /// scaledNormalized), <paramref name="scaledNormalizedBias"/> ([C]) is added to each channel of weight_c·x̂ once that
    /// is rounded, with the bits of a broadcasting <see cref="BinaryOp.Add"/> (before any accumulation): a channel sum's
    /// gradient that would otherwise be added to the output in a full-size pass of its own.
    /// </summary>
    void BatchNormBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage gradX, IStorage? gradWeight, IStorage? scaledNormalized, NormAccumulate accumulate = NormAccumulate.None,
        IStorage? gradYSums = null, IStorage? gradXSums = null, IStorage? scaledNormalizedBias = null) =>
        ComposedKernels.BatchNormBackward(this, geometry, gradY, x, mean, variance, weight, gradX, gradWeight, scaledNormalized, accumulate, gradYSums, gradXSums,
            scaledNormalizedBias);

    /// <summary>
    /// All three derivatives of ⟨h, <see cref="BatchNormInputGrad"/>(gy, x, w)⟩: with respect to gy,
    /// <see cref="BatchNormInputGrad"/>(h, x, w) into <paramref name="gradGradY"/> (A is self-adjoint in gy), and with
    /// respect to x and w as <see cref="BatchNormInputGradBackward"/> writes them, each with the bits of the kernel it
    /// stands for. A backend may take the sums of h that the first needs from the second's pass and write both
    /// full-size outputs in one pass; the default runs the two kernels. Not recorded. <paramref name="accumulate"/>
    /// adds gradX (<see cref="NormAccumulate.GradX"/>) or gradGradY (<see cref="NormAccumulate.Second"/>) into the
    /// destination, as <see cref="BatchNormBackward"/> does.
    /// </summary>
    void BatchNormDoubleBackward(in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradGradY, IStorage gradX, IStorage gradWeight, NormAccumulate accumulate = NormAccumulate.None) =>
        ComposedKernels.BatchNormDoubleBackward(this, geometry, gradY, x, mean, variance, weight, h, gradGradY, gradX, gradWeight, accumulate);

    /// <summary>
    /// Fills a Float32/Float64 storage from the counter-based generator (see <see cref="Philox"/>):
    /// element i gets <see cref="Philox.Uniform(ulong, ulong)"/> (or <see cref="Philox.Normal(ulong, ulong)"/>)
    /// of counter <paramref name="offset"/> + i, then y = low + (high - low)·u (or mean + std·n),
    /// computed in double and rounded once to the storage dtype; a uniform value that rounding
    /// carried up to high is replaced by the largest value of the dtype below high, so uniform draws
    /// lie in [low, high). Every backend gives the same numbers for the same seed and offset.
    /// </summary>
    void Random(IStorage destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b);
}

/// <summary>Distribution drawn by <see cref="IBackend.Random"/>; a and b are (low, high) or (mean, std).</summary>
public enum RandomDistribution
{
    /// <summary>Uniform on [a, b).</summary>
    Uniform = 0,
    /// <summary>Normal with mean a and standard deviation b.</summary>
    Normal = 1,
}
