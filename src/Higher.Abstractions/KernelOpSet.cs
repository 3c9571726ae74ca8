using System.Globalization;
using System.Text;

namespace Higher;

/// <summary>
/// The op codes that cross a native kernel ABI: every member of <see cref="DType"/>,
/// <see cref="UnaryOp"/>, <see cref="BinaryOp"/>, <see cref="CompareOp"/>, <see cref="ReduceOp"/> and
/// <see cref="RandomDistribution"/> with its value. native/kernels.cu declares the same list (as
/// X-macros) and compiles in the same <see cref="Hash"/>, so a kernel library built from another
/// op set is refused at load time instead of running the wrong kernel.
/// </summary>
public static class KernelOpSet
{
    /// <summary>"DType.Float32=0;DType.Float64=1;...;UnaryOp.Affine=0;...": each enum in the order above, members by value.</summary>
    public static string Text { get; } = Build();

    /// <summary>64-bit FNV-1a of the ASCII bytes of <see cref="Text"/>.</summary>
    public static ulong Hash { get; } = Fnv1a(Text);

    /// <summary>64-bit FNV-1a (offset basis 14695981039346656037, prime 1099511628211) of <paramref name="text"/>'s bytes, as kernels.cu computes it.</summary>
    public static ulong Fnv1a(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        ulong h = 14695981039346656037UL;
        foreach (char c in text)
        {
            h = (h ^ (byte)c) * 1099511628211UL;
        }
        return h;
    }

    private static string Build()
    {
        var sb = new StringBuilder();
        Append<DType>(sb);
        Append<UnaryOp>(sb);
        Append<BinaryOp>(sb);
        Append<CompareOp>(sb);
        Append<ReduceOp>(sb);
        Append<RandomDistribution>(sb);
        return sb.ToString();
    }

    private static void Append<T>(StringBuilder sb) where T : struct, Enum
    {
        var values = Enum.GetValues<T>();
        Array.Sort(values, (a, b) => Convert.ToInt32(a, CultureInfo.InvariantCulture).CompareTo(Convert.ToInt32(b, CultureInfo.InvariantCulture)));
        foreach (var v in values)
        {
            sb.Append(typeof(T).Name).Append('.').Append(v.ToString()).Append('=')
              .Append(Convert.ToInt32(v, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture)).Append(';');
        }
    }
}
