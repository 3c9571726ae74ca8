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
    /// With beta == 0, C's prior content is ignored (even NaN).
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
    Uniform,
    /// <summary>Normal with mean a and standard deviation b.</summary>
    Normal,
}
