using System.Runtime.CompilerServices;
using System.Text;

namespace Higher;

/// <summary>
/// Immutable dimensions of a tensor in row-major order. Rank 0 is a scalar; zero-size dimensions
/// are allowed. Element count is the product of the dimensions (1 for a scalar); every way of making
/// a shape refuses one whose element count does not fit in a <see cref="long"/>, so no count wraps.
/// </summary>
[CollectionBuilder(typeof(Shape), nameof(Create))]
public readonly struct Shape : IEquatable<Shape>
{
    private static readonly int[] EmptyDims = [];
    private readonly int[]? _dims;

    /// <summary>
    /// Creates a shape from its dimensions (copied). Throws if a dimension is negative or the element
    /// count overflows a 64-bit integer.
    /// </summary>
    public Shape(params ReadOnlySpan<int> dims)
    {
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] < 0)
            {
                throw new ArgumentException($"Shape [{string.Join(", ", dims.ToArray())}] has negative dimension {i} ({dims[i]}).", nameof(dims));
            }
        }
        CheckCount(dims);
        _dims = dims.Length == 0 ? EmptyDims : dims.ToArray();
    }

    private Shape(int[] owned, bool _)
    {
        CheckCount(owned);
        _dims = owned;
    }

    /// <summary>
    /// Throws when the product of <paramref name="dims"/> does not fit in a long. A zero dimension
    /// anywhere makes the count 0, which always fits, so the product is only checked without one.
    /// </summary>
    private static void CheckCount(ReadOnlySpan<int> dims)
    {
        // Dimensions are ints: one or two of them always multiply within a long (every tensor op's
        // output shape comes through here, so the common ranks skip the loop).
        if (dims.Length <= 2)
        {
            return;
        }
        long n = 1;
        int overflowAt = -1;
        for (int i = 0; i < dims.Length; i++)
        {
            int d = dims[i];
            if (d == 0)
            {
                return;
            }
            long high = Math.BigMul(n, d, out long low);
            if (overflowAt < 0 && (high != 0 || low < 0))
            {
                overflowAt = i;
            }
            n = low;
        }
        if (overflowAt >= 0)
        {
            throw new ArgumentException(
                $"Shape [{string.Join(", ", dims.ToArray())}] has too many elements: the product of dimensions 0..{overflowAt} exceeds {long.MaxValue} (2^63 - 1).", nameof(dims));
        }
    }

    /// <summary>Builds a shape from a collection expression such as <c>[2, 3]</c>.</summary>
    public static Shape Create(ReadOnlySpan<int> dims) => new(dims);

    /// <summary>Enumerates the dimensions (enables collection expressions).</summary>
    public ReadOnlySpan<int>.Enumerator GetEnumerator() => Dims.GetEnumerator();

    /// <summary>
    /// Wraps an array the caller promises never to mutate again (no copy, no check of the signs);
    /// an element count that overflows a long is still refused.
    /// </summary>
    public static Shape FromOwned(int[] dims) => new(dims, true);

    /// <summary>The scalar shape [].</summary>
    public static Shape Scalar => new(EmptyDims, true);

    /// <summary>Dimensions as a read-only span.</summary>
    public ReadOnlySpan<int> Dims => _dims ?? EmptyDims;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _dims?.Length ?? 0;

    /// <summary>Size of dimension <paramref name="axis"/> (negative counts from the end).</summary>
    public int this[int axis] => Dims[NormalizeAxis(axis)];

    /// <summary>Number of elements: the product of the dimensions.</summary>
    public long Numel
    {
        get
        {
            long n = 1;
            foreach (int d in Dims)
            {
                n *= d;
            }
            return n;
        }
    }

    /// <summary>Returns the dimensions as a new array.</summary>
    public int[] ToArray() => Dims.ToArray();

    /// <summary>Writes the row-major strides into <paramref name="strides"/> (of length <see cref="Rank"/>), without allocating.</summary>
    public void ContiguousStrides(Span<long> strides)
    {
        var dims = Dims;
        if (strides.Length != dims.Length)
        {
            throw new ArgumentException($"ContiguousStrides: {strides.Length} strides for a rank-{dims.Length} shape.", nameof(strides));
        }
        long s = 1;
        for (int i = dims.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= dims[i];
        }
    }

    /// <summary>Row-major (contiguous) element strides of this shape.</summary>
    public long[] ContiguousStrides()
    {
        var dims = Dims;
        var strides = new long[dims.Length];
        long s = 1;
        for (int i = dims.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= dims[i];
        }
        return strides;
    }

    /// <summary>Maps a possibly negative axis into [0, Rank); throws naming the shape when out of range.</summary>
    public int NormalizeAxis(int axis)
    {
        int r = Rank;
        int a = axis < 0 ? axis + r : axis;
        if (a < 0 || a >= r)
        {
            throw new ArgumentOutOfRangeException(nameof(axis), axis, $"Axis {axis} is out of range for shape {this} (rank {r}).");
        }
        return a;
    }

    /// <summary>
    /// NumPy broadcasting of two shapes. Throws <see cref="ArgumentException"/> naming both operands,
    /// their shapes and the first incompatible dimension.
    /// </summary>
    public static Shape Broadcast(Shape a, Shape b, string nameA = "a", string nameB = "b")
    {
        if (a.Equals(b))
        {
            return a;
        }
        int r = Math.Max(a.Rank, b.Rank);
        var dims = new int[r];
        var ad = a.Dims;
        var bd = b.Dims;
        for (int i = 0; i < r; i++)
        {
            int da = i < r - ad.Length ? 1 : ad[i - (r - ad.Length)];
            int db = i < r - bd.Length ? 1 : bd[i - (r - bd.Length)];
            if (da == db || db == 1)
            {
                dims[i] = da;
            }
            else if (da == 1)
            {
                dims[i] = db;
            }
            else
            {
                throw new ArgumentException($"Cannot broadcast {a} ({nameA}) with {b} ({nameB}): dimension {i} has sizes {da} and {db}.");
            }
        }
        return new Shape(dims, true);
    }

    /// <summary>True if this shape can be broadcast to <paramref name="target"/>.</summary>
    public bool IsBroadcastableTo(Shape target)
    {
        if (Rank > target.Rank)
        {
            return false;
        }
        var d = Dims;
        var t = target.Dims;
        int off = t.Length - d.Length;
        for (int i = 0; i < d.Length; i++)
        {
            if (d[i] != t[i + off] && d[i] != 1)
            {
                return false;
            }
        }
        return true;
    }

    /// <inheritdoc/>
    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (int d in Dims)
        {
            h.Add(d);
        }
        return h.ToHashCode();
    }

    /// <summary>Shape equality.</summary>
    public static bool operator ==(Shape left, Shape right) => left.Equals(right);

    /// <summary>Shape inequality.</summary>
    public static bool operator !=(Shape left, Shape right) => !left.Equals(right);

    /// <summary>Formats as "[2, 3]"; a scalar is "[]".</summary>
    public override string ToString()
    {
        var sb = new StringBuilder("[");
        var d = Dims;
        for (int i = 0; i < d.Length; i++)
        {
            if (i > 0)
            {
                sb.Append(", ");
            }
            sb.Append(d[i]);
        }
        return sb.Append(']').ToString();
    }

    /// <summary>Implicit conversion from an int array (copied).</summary>
    public static implicit operator Shape(int[] dims) => new(dims);
}
