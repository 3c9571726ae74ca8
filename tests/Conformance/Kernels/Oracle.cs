namespace Higher.Conformance.Kernels;

/// <summary>
/// Independent scalar oracles for the kernel conformance tests: naive loops in double with
/// Math.*, written for clarity, never sharing code with a backend.
/// </summary>
internal static class Oracle
{
    /// <summary>Row-major contiguous strides.</summary>
    public static long[] Strides(int[] dims)
    {
        var s = new long[dims.Length];
        long acc = 1;
        for (int i = dims.Length - 1; i >= 0; i--)
        {
            s[i] = acc;
            acc *= dims[i];
        }
        return s;
    }

    public static long Numel(int[] dims)
    {
        long n = 1;
        foreach (int d in dims)
        {
            n *= d;
        }
        return n;
    }

    /// <summary>Multi-index of flat position <paramref name="flat"/> in <paramref name="dims"/>.</summary>
    public static int[] Unravel(long flat, int[] dims)
    {
        var idx = new int[dims.Length];
        for (int i = dims.Length - 1; i >= 0; i--)
        {
            idx[i] = (int)(flat % dims[i]);
            flat /= dims[i];
        }
        return idx;
    }

    /// <summary>Flat position in an input of <paramref name="inDims"/> broadcast to an output multi-index.</summary>
    public static long BroadcastOffset(int[] outIndex, int[] inDims)
    {
        int off = outIndex.Length - inDims.Length;
        long flat = 0;
        for (int i = 0; i < inDims.Length; i++)
        {
            int v = inDims[i] == 1 ? 0 : outIndex[i + off];
            flat = flat * inDims[i] + v;
        }
        return flat;
    }

    public static int[] BroadcastShape(int[] a, int[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var y = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            y[i] = da == 1 ? db : da;
        }
        return y;
    }

    /// <summary>
    /// ln(1 + x) without cancellation: the series x - x²/2 + x³/3 - x⁴/4 + x⁵/5 for |x| &lt; 1e-4;
    /// 2·atanh(x / (2 + x)) on (-0.5, 1), where atanh is well conditioned; ln(1 + x) elsewhere, where
    /// 1 + x is exact (x ≤ -0.5) or its rounding costs under an ulp of a result ≥ ln 2 (x ≥ 1).
    /// </summary>
    public static double Log1p(double x)
    {
        if (x == -1)
        {
            return double.NegativeInfinity;
        }
        if (Math.Abs(x) < 1e-4)
        {
            return x * (1 - x * (1.0 / 2 - x * (1.0 / 3 - x * (1.0 / 4 - x / 5))));
        }
        // For x ≤ -0.5, 1 + x is exact (Sterbenz), so ln is as good as the C library's.
        return x is > -0.5 and < 1 ? 2 * Math.Atanh(x / (2 + x)) : Math.Log(1 + x);
    }

    /// <summary>
    /// erf by its Maclaurin series in decimal: 28 digits swallow the cancellation (terms up to ~2e9)
    /// for |x| ≤ 4.5; ±1 for |x| ≥ 6, where erfc is below half an ulp of 1. Tests avoid (4.5, 6).
    /// </summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x))
        {
            return x;
        }
        if (Math.Abs(x) >= 6)
        {
            return Math.Sign(x);
        }
        if (Math.Abs(x) < 1e-10)
        {
            // Below decimal's 1e-28 resolution; the next series term is under 1e-20 relative.
            return 1.1283791670955126 * x;
        }
        decimal xd = ExactDecimal(x);
        decimal x2 = xd * xd;
        decimal t = xd;
        decimal sum = xd;
        for (int n = 1; n < 400; n++)
        {
            t = -t * x2 / n;
            decimal term = t / (2 * n + 1);
            sum += term;
            if (Math.Abs(term) < 1e-27m)
            {
                break;
            }
        }
        const decimal TwoOverSqrtPi = 1.1283791670955125738961589031m;
        return (double)(sum * TwoOverSqrtPi);
    }

    /// <summary>x as a decimal to 28 digits; the built-in conversion keeps only 15 significant digits.</summary>
    private static decimal ExactDecimal(double x)
    {
        long bits = BitConverter.DoubleToInt64Bits(x);
        bool negative = bits < 0;
        int exponent = (int)((bits >> 52) & 0x7FF);
        long mantissa = bits & 0xF_FFFF_FFFF_FFFF;
        if (exponent == 0)
        {
            exponent = 1;
        }
        else
        {
            mantissa |= 1L << 52;
        }
        // x = mantissa · 2^(exponent - 1075); |x| < 6 here, so the power is negative.
        decimal value = mantissa;
        for (int e = exponent - 1075; e < 0; e++)
        {
            value /= 2;
        }
        return negative ? -value : value;
    }

    public static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));

    public static double Softplus(double x) => x > 0 ? x + Log1p(Math.Exp(-x)) : Log1p(Math.Exp(x));

    /// <summary>IEEE maximum: NaN if either is NaN.</summary>
    public static double Max(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : a >= b ? a : b;

    /// <summary>IEEE minimum: NaN if either is NaN.</summary>
    public static double Min(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : a <= b ? a : b;
}
